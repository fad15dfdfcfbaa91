//! The minimal server: the ceiling of what one core can answer, and the benchmark's upstream.
//!
//! One current-thread runtime (one core, as an engine core has), hyper's HTTP/1.1 server, a
//! handler that reads the whole body and answers `200` with an empty protobuf body, after
//! `delay` when asked (a slow upstream). Nothing else: no routing, no decoding, no queue.
//! With `grpc`, hyper's HTTP/2 server answering every call `OK` with an empty message, the
//! least an OTLP/gRPC server can do.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// Serves until the process is killed.
pub fn serve(listen: SocketAddr, delay: Duration, grpc: bool) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            if grpc {
                tokio::spawn(serve_grpc(stream, delay));
                continue;
            }
            tokio::spawn(async move {
                let service = service_fn(
                    move |request: http::Request<hyper::body::Incoming>| async move {
                        let _ = request.into_body().collect().await;
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        let mut response = Response::new(Full::new(Bytes::new()));
                        *response.status_mut() = StatusCode::OK;
                        response.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static("application/x-protobuf"),
                        );
                        Ok::<_, Infallible>(response)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

/// One HTTP/2 connection, every call answered `OK` with an empty message once its message is
/// read (after `delay`).
async fn serve_grpc(stream: tokio::net::TcpStream, delay: Duration) {
    use otap_df_nodes::otlp_grpc::{UnaryBody, frame};
    let service = service_fn(
        move |request: http::Request<hyper::body::Incoming>| async move {
            let _ = request.into_body().collect().await;
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
            let mut response =
                Response::new(UnaryBody::new(Some(frame(&[], false)), Some(trailers)));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/grpc"),
            );
            Ok::<_, Infallible>(response)
        },
    );
    let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .adaptive_window(true)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}
