//! Rebuilds a crate that embeds migrations (each names this file as its `build` script) when
//! one of its migrations is added or changed: `embed_migrations!` reads `migrations/` at compile
//! time, and cargo tracks only the files the compiler read, not new ones (a stale binary would
//! run, and template test databases be built, without them).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
