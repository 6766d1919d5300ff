//! Rendering throughput on one core: `cargo bench -p tracking-pattern --bench render`.
//! Target (issue 6): at least 1,000,000 codes/s for a typical pattern.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tracking_pattern::{
    AllowedChars, Context, Discount, Pattern, Rules, SocialHandles, SocialNetwork,
};

/// A fast deterministic source: the bench measures rendering, not the OS generator.
fn rng() -> impl FnMut(usize) -> usize {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    move |upper| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % upper as u64) as usize
    }
}

fn bench(c: &mut Criterion) {
    let rules = Rules {
        max_len: 50,
        allowed: AllowedChars::alphanumeric()
            .with_punctuation("-_")
            .unwrap_or_else(|_| AllowedChars::alphanumeric()),
        uppercase: true,
    };
    let context = Context {
        username: Some("josé.núñez"),
        first_name: Some("José"),
        last_name: Some("Núñez"),
        campaign: Some("Summer Launch"),
        discount: Some(Discount::Percent { basis_points: 2000 }),
        social: SocialHandles::new().with(SocialNetwork::Instagram, "@jose.n"),
    };
    let mut group = c.benchmark_group("render");
    group.throughput(Throughput::Elements(1));
    for pattern in [
        "{username}{discount}",
        "{first_name|trunc:4}-{random:4}",
        "{campaign|trunc:6}{instagram|lower}{discount}",
    ] {
        let parsed = Pattern::parse(pattern).unwrap_or_else(|e| panic!("{e}"));
        let mut source = rng();
        let mut out = String::with_capacity(64);
        group.bench_function(pattern, |b| {
            b.iter(|| {
                let _ = parsed.render_into(black_box(&context), &rules, &mut source, &mut out);
                black_box(&out);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
