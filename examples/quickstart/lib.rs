//! Nothing but a home for the quickstart example: `cargo run --example quickstart`.
