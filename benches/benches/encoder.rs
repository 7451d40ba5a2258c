//! Micro-benchmarks of the row encoder and decoder (rows <-> the `LOAD DATA`
//! stream), on two shapes: sysbench rows and 32 KiB wide rows with every
//! byte value.
//!
//! - `plugin/*`: the MySQL plugin's own encoder, `dbferry_mysql::encode`
//!   (`push_value` per field as `push_row` does, and `unescape`);
//! - `baseline/*`: `dbferry_benches::encoder_baseline`, a plain reference
//!   encoder, so a regression of the plugin's shows up as a ratio too.
//!
//! `cargo bench -p dbferry-benches --bench encoder`

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dbferry_benches::encoder_baseline::encode_row;
use dbferry_mysql::encode::{push_value, split_fields, unescape};
use mysql_async::Value;

/// sysbench-like rows: id, k, c CHAR(120), pad CHAR(60), as the text protocol delivers them.
fn sysbench_rows(n: usize) -> Vec<Vec<Vec<u8>>> {
    (0..n)
        .map(|i| {
            let c: String = (0..11)
                .map(|g| format!("{:011}", (i * 7919 + g * 104_729) % 100_000_000_000))
                .collect::<Vec<_>>()
                .join("-");
            let pad: String = (0..5)
                .map(|g| format!("{:011}", (i * 31 + g) % 100_000_000_000))
                .collect::<Vec<_>>()
                .join("-");
            vec![
                i.to_string().into_bytes(),
                (i * 13 % 500_000).to_string().into_bytes(),
                c.into_bytes(),
                pad.into_bytes(),
            ]
        })
        .collect()
}

/// Wide rows: a 16 KiB text with tabs and newlines and a 16 KiB blob with every byte value.
fn wide_rows(n: usize) -> Vec<Vec<Vec<u8>>> {
    (0..n)
        .map(|i| {
            let text: Vec<u8> = b"lorem ipsum\tdolor\nsit amet \xc3\xbc "
                .iter()
                .copied()
                .cycle()
                .take(16 * 1024)
                .collect();
            let blob: Vec<u8> = (0..16 * 1024).map(|j| ((i * 131 + j * 7) % 256) as u8).collect();
            vec![i.to_string().into_bytes(), text, blob]
        })
        .collect()
}

fn bench_shape(c: &mut Criterion, name: &str, rows: &[Vec<Vec<u8>>]) {
    let bytes: usize = rows.iter().map(|r| r.iter().map(Vec::len).sum::<usize>()).sum();
    let values: Vec<Vec<Value>> = rows
        .iter()
        .map(|r| r.iter().map(|f| Value::Bytes(f.clone())).collect())
        .collect();
    let mut group = c.benchmark_group(format!("encode/{name}"));
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("plugin", |b| {
        let mut out = BytesMut::with_capacity(bytes * 2);
        b.iter(|| {
            out.clear();
            for row in &values {
                for (i, value) in row.iter().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(b"\t");
                    }
                    push_value(&mut out, Some(value));
                }
                out.extend_from_slice(b"\n");
            }
            black_box(out.len())
        })
    });
    group.bench_function("baseline", |b| {
        let mut out = Vec::with_capacity(bytes * 2);
        let mut fields: Vec<Option<&[u8]>> = Vec::with_capacity(8);
        b.iter(|| {
            out.clear();
            for row in rows {
                fields.clear();
                fields.extend(row.iter().map(|f| Some(f.as_slice())));
                encode_row(&mut out, &fields);
            }
            black_box(out.len())
        })
    });
    group.finish();

    // Decoding (used by diagnostics and tests, and the reverse direction's cost).
    let mut encoded = Vec::new();
    for row in rows {
        let fields: Vec<Option<&[u8]>> = row.iter().map(|f| Some(f.as_slice())).collect();
        encode_row(&mut encoded, &fields);
    }
    let mut group = c.benchmark_group(format!("decode/{name}"));
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("plugin", |b| {
        b.iter(|| {
            let mut total = 0;
            for line in encoded.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                for field in split_fields(line) {
                    total += unescape(field).map_or(0, |v| v.len());
                }
            }
            black_box(total)
        })
    });
    group.finish();
}

fn bench_encoder(c: &mut Criterion) {
    bench_shape(c, "sysbench-rows-10k", &sysbench_rows(10_000));
    bench_shape(c, "wide-rows-32KiB-x64", &wide_rows(64));
}

criterion_group!(benches, bench_encoder);
criterion_main!(benches);
