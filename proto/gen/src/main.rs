//! `cargo run --manifest-path proto/gen/Cargo.toml`: regenerate `src/longport/pb.rs`

fn main() -> tether_proto_gen::Result<()> {
    let work = std::env::temp_dir().join(format!("tether-proto-gen-{}", std::process::id()));
    let text = tether_proto_gen::generate(&work);
    let _ = std::fs::remove_dir_all(&work);
    let target = tether_proto_gen::target_file();
    std::fs::write(&target, text?)?;
    println!("wrote {}", target.display());
    Ok(())
}
