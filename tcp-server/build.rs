//! Rebuilds the crate when a migration is added: `refinery::embed_migrations!` reads the
//! directory at compile time, and cargo alone would notice only edits to files it already has.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
