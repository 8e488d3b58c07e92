//! The checked-in `src/longport/pb.rs` must be exactly what the generator produces today

#[test]
fn checked_in_pb_rs_matches_generator_output() {
    let work = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("drift");
    let _ = std::fs::remove_dir_all(&work);
    let fresh = tether_proto_gen::generate(&work).expect("generation failed");
    let target = tether_proto_gen::target_file();
    let current = std::fs::read_to_string(&target)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", target.display()));
    if current != fresh {
        let first = current
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| current.lines().count().min(fresh.lines().count()));
        panic!(
            "{} is out of date with proto/control.proto (first difference at line {}).\n\
             Fresh output: {}\n\
             Regenerate with `cargo run --manifest-path proto/gen/Cargo.toml`, \
             or see the difference with `diff -u {} {}`.",
            target.display(),
            first + 1,
            work.join("pb.rs").display(),
            target.display(),
            work.join("pb.rs").display(),
        );
    }
}
