//! Compiles proto/ with protox (pure Rust, no protoc) and generates prost + tonic code, plus the
//! encoded descriptor set that gRPC reflection serves.
use prost::Message;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        root.join("earlyhelp/intake/v1/intake.proto"),
        root.join("earlyhelp/notifications/v1/notifications.proto"),
        root.join("earlyhelp/consent/v1/consent.proto"),
        root.join("earlyhelp/casework/v1/casework.proto"),
        root.join("earlyhelp/allocation/v1/allocation.proto"),
        root.join("earlyhelp/assessment/v1/assessment.proto"),
        root.join("earlyhelp/reporting/v1/reporting.proto"),
        root.join("earlyhelp/records/v1/records.proto"),
        root.join("earlyhelp/gateway/v1/gateway.proto"),
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let fds = protox::compile(&files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("earlyhelp_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Messages map to the JSON contracts field for field (see intake.proto).
        .type_attribute(
            ".earlyhelp",
            "#[derive(serde::Serialize, serde::Deserialize)]",
        )
        .type_attribute(".earlyhelp", "#[serde(default)]")
        .compile_fds(fds)?;
    Ok(())
}
