//! The minimal server: the ceiling of what one core can answer, and the benchmark's upstream.
//!
//! One current-thread runtime (one core, as an engine core has), hyper's HTTP/1.1 server, a
//! handler that reads the whole body and answers `200` with an empty protobuf body, after
//! `delay` when asked (a slow upstream). Nothing else: no routing, no decoding, no queue.
//! With `grpc`, hyper's HTTP/2 server answering every call `OK` with an empty message, the
//! least an OTLP/gRPC server can do; with `tonic` too, the same on tonic's server side (its
//! `Grpc` unary path with a codec that keeps the message as bytes, as upstream otap-dataflow
//! receives OTLP), the ceiling of a Rust gRPC server as one is usually built.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// Which gRPC server, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grpc {
    /// OTLP/HTTP.
    No,
    /// OTLP/gRPC on hyper's HTTP/2 server alone.
    Hyper,
    /// OTLP/gRPC on tonic's server side.
    Tonic,
}

/// Serves until the process is killed.
pub fn serve(listen: SocketAddr, delay: Duration, grpc: Grpc) -> Result<(), String> {
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
            match grpc {
                Grpc::No => {}
                Grpc::Hyper => {
                    tokio::spawn(serve_grpc(stream, delay));
                    continue;
                }
                Grpc::Tonic => {
                    tokio::spawn(tonic_ceiling::serve(stream));
                    continue;
                }
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

/// The tonic ceiling: every call decoded by tonic's `Grpc` with a codec that keeps the message
/// as bytes, answered `OK` with an empty message.
mod tonic_ceiling {
    use std::convert::Infallible;
    use std::future::{Ready, ready};

    use bytes::{Buf, BufMut, Bytes};
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
    use tonic::{Request, Response, Status};

    /// Messages as bytes, both ways.
    #[derive(Default)]
    struct BytesCodec;

    struct BytesCoder;

    impl Codec for BytesCodec {
        type Encode = Bytes;
        type Decode = Bytes;
        type Encoder = BytesCoder;
        type Decoder = BytesCoder;

        fn encoder(&mut self) -> BytesCoder {
            BytesCoder
        }

        fn decoder(&mut self) -> BytesCoder {
            BytesCoder
        }
    }

    impl Encoder for BytesCoder {
        type Item = Bytes;
        type Error = Status;

        fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
            dst.put(item);
            Ok(())
        }
    }

    impl Decoder for BytesCoder {
        type Item = Bytes;
        type Error = Status;

        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
            Ok(Some(src.copy_to_bytes(src.remaining())))
        }
    }

    /// An export method: takes the message, answers an empty one.
    struct Export;

    impl tonic::server::UnaryService<Bytes> for Export {
        type Response = Bytes;
        type Future = Ready<Result<Response<Bytes>, Status>>;

        fn call(&mut self, _request: Request<Bytes>) -> Self::Future {
            ready(Ok(Response::new(Bytes::new())))
        }
    }

    /// One HTTP/2 connection.
    pub(super) async fn serve(stream: tokio::net::TcpStream) {
        let service = service_fn(|request: http::Request<hyper::body::Incoming>| async move {
            let mut grpc = tonic::server::Grpc::new(BytesCodec);
            Ok::<_, Infallible>(grpc.unary(Export, request).await)
        });
        let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .adaptive_window(true)
            .serve_connection(TokioIo::new(stream), service)
            .await;
    }
}
