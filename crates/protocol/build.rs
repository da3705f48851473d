//! Generates the Milvus protobuf types and the gRPC client from `proto/milvus/*.proto`.
//!
//! Uses the system `protoc` (or the one named by the `PROTOC` environment
//! variable). The generated code goes to `OUT_DIR` and is never committed.

use std::env;
use std::path::PathBuf;

const PROTOS: [&str; 5] = [
    "common.proto",
    "schema.proto",
    "msg.proto",
    "milvus.proto",
    "etcd_meta.proto",
];

fn main() {
    println!("cargo:rerun-if-env-changed=PROTOC");
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let proto_dir = manifest_dir.join("../../proto/milvus");
    println!("cargo:rerun-if-changed={}", proto_dir.display());

    let protoc = find_protoc().unwrap_or_else(|| {
        panic!(
            "cdc-protocol: `protoc` was not found. Install the Debian package \
             `protobuf-compiler` (apt-get install -y protobuf-compiler) or set PROTOC \
             to the path of a protoc binary."
        )
    });
    // prost-build reads PROTOC itself; set it so that the binary found above is used.
    env::set_var("PROTOC", &protoc);

    let protos: Vec<PathBuf> = PROTOS.iter().map(|p| proto_dir.join(p)).collect();
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        // The generated client takes any tower service; no `connect()` helper
        // (Milvus also has an rpc named `Connect`, which would clash with it).
        .build_transport(false)
        // Zero-copy decoding: protobuf `bytes` fields become `bytes::Bytes`.
        .bytes(".")
        .compile_protos(&protos, std::slice::from_ref(&proto_dir))
        .unwrap_or_else(|e| {
            panic!(
                "cdc-protocol: failed to compile {} with {}: {e}",
                proto_dir.display(),
                protoc.display()
            )
        });
}

/// `PROTOC` if set (it must exist), else `protoc` from `PATH`.
fn find_protoc() -> Option<PathBuf> {
    if let Some(p) = env::var_os("PROTOC") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Some(p);
        }
        panic!(
            "cdc-protocol: PROTOC is set to {}, which is not a file. Unset it to use `protoc` \
             from PATH (Debian package `protobuf-compiler`).",
            p.display()
        );
    }
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join("protoc"))
        .find(|candidate| candidate.is_file())
}
