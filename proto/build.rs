//! Finds the operations: every file in `src/message/` is one (see `src/message.rs`). Writes the
//! module declarations and `for_each_operation!`, the list the thin `Request` and `Response`
//! enums and tcp-server's dispatch are made from, so adding an operation is adding its file.

use std::fmt::Write as _;
use std::path::Path;
use std::{env, fs};

fn main() {
    let dir = Path::new(&env::var("CARGO_MANIFEST_DIR").expect("set by cargo")).join("src/message");
    println!("cargo::rerun-if-changed={}", dir.display());
    let mut modules: Vec<String> = fs::read_dir(&dir)
        .expect("proto/src/message is readable")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .map(|path| {
            path.file_stem()
                .expect("a file name")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    modules.sort();
    let mut out = String::new();
    for module in &modules {
        assert!(
            module
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "proto/src/message/{module}.rs: an operation's file is named in snake_case"
        );
        let path = dir.join(format!("{module}.rs"));
        writeln!(
            out,
            "#[path = {:?}]\npub mod {module};",
            path.display().to_string()
        )
        .unwrap();
    }
    let list: Vec<String> = modules
        .iter()
        .map(|m| format!("{m} {}", camel(m)))
        .collect();
    writeln!(
        out,
        "/// Calls `$callback!` with every operation of the protocol, as `module Type` pairs (the \
         module under `proto::message`, the request type in it), in file-name order.\n\
         #[macro_export]\nmacro_rules! for_each_operation {{\n    ($callback:ident) => {{\n        \
         $callback! {{ {} }}\n    }};\n}}",
        list.join(", ")
    )
    .unwrap();
    let target = Path::new(&env::var("OUT_DIR").expect("set by cargo")).join("operations.rs");
    fs::write(target, out).expect("OUT_DIR is writable");
}

/// `get_profile` -> `GetProfile`.
fn camel(module: &str) -> String {
    module
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}
