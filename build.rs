//! Compiles every `proto/**/*.proto` into Rust (messages, clients, servers) and writes the
//! file descriptor set that gRPC reflection serves. protoc comes from protoc-bin-vendored, so no
//! system package is needed.

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut protos = Vec::new();
    collect_protos(Path::new("proto"), &mut protos)?;
    protos.sort();
    // The directory too, so that a new .proto file is picked up.
    println!("cargo:rerun-if-changed=proto");
    for proto in &protos {
        println!("cargo:rerun-if-changed={}", proto.display());
    }

    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // Maps in key order: a message encodes to the same bytes every time, so a request id's
    // fingerprint (tracking_db::request_keys) tells a retry from a different request.
    config.btree_map(["."]);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("tracking_descriptor.bin"))
        .compile_with_config(config, &protos, &[PathBuf::from("proto")])?;
    Ok(())
}

fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            out.push(path);
        }
    }
    Ok(())
}
