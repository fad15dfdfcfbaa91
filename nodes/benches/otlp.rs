//! What a receiver pays to count a request: the zero-copy wire walk against a full `prost`
//! decode, per signal, for a 100-record request. `cargo bench -p otap-df-nodes --bench otlp`.

#![allow(missing_docs, clippy::expect_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use otap_df_core::data::Signal;
use otap_df_nodes::otlp::{decode_with_prost, synthetic, wire};

fn count(c: &mut Criterion) {
    let mut group = c.benchmark_group("count_100_records");
    for signal in [Signal::Logs, Signal::Metrics, Signal::Traces] {
        let payload = synthetic(signal, 100, "bench", 1);
        let bytes = payload.bytes().clone();
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(format!("{signal}/wire_walk"), |b| {
            b.iter(|| wire::count(signal, std::hint::black_box(&bytes)).expect("valid"))
        });
        group.bench_function(format!("{signal}/prost_decode"), |b| {
            b.iter(|| decode_with_prost(signal, std::hint::black_box(&bytes)).expect("valid"))
        });
    }
    group.finish();
}

/// What `headers_from_identity` adds to an exporter's request: the headers read from the
/// payload's identity (one header, `X-Scope-OrgID: tenant`), beside an exporter without it;
/// for one sender (its headers made once) and for two in turn (made for each payload).
fn headers_from_identity(c: &mut Criterion) {
    use otap_df_core::capability::Identity;
    use otap_df_nodes::IdentityHeaders;
    use std::collections::BTreeMap;

    let mut group = c.benchmark_group("headers_from_identity");
    let payload = synthetic(Signal::Logs, 100, "bench", 1).with_identity(
        Identity::with_attributes("svc-a", [("tenant", "acme"), ("groups", "writers")]),
    );
    let none = IdentityHeaders::new(&BTreeMap::new());
    let one = IdentityHeaders::new(&BTreeMap::from([(
        "x-scope-orgid".to_owned(),
        "tenant".to_owned(),
    )]));
    group.bench_function("none_configured", |b| {
        b.iter(|| none.of(std::hint::black_box(&payload)).expect("headers"))
    });
    group.bench_function("one_header", |b| {
        b.iter(|| one.of(std::hint::black_box(&payload)).expect("headers"))
    });
    // Two senders in turn: the headers are made anew for each payload.
    let other = synthetic(Signal::Logs, 100, "bench", 1).with_identity(Identity::with_attributes(
        "svc-b",
        [("tenant", "globex"), ("groups", "writers")],
    ));
    let mut turn = false;
    group.bench_function("one_header_senders_in_turn", |b| {
        b.iter(|| {
            turn = !turn;
            let payload = if turn { &payload } else { &other };
            one.of(std::hint::black_box(payload)).expect("headers")
        })
    });
    group.finish();
}

criterion_group!(benches, count, headers_from_identity);
criterion_main!(benches);
