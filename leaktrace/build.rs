//! Embeds the eBPF object that `cargo xtask build` produced.
use std::{env, fs, path::PathBuf};

fn main() -> anyhow::Result<()> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest.parent().expect("workspace root").to_path_buf();
    let obj = env::var_os("LEAKTRACE_EBPF_OBJ")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/ebpf/bpfel-unknown-none/release/leaktrace"));
    println!("cargo:rerun-if-env-changed=LEAKTRACE_EBPF_OBJ");
    println!("cargo:rerun-if-changed={}", obj.display());
    let out = PathBuf::from(env::var("OUT_DIR")?);
    if !obj.exists() {
        anyhow::bail!(
            "the eBPF object {} does not exist. Build through xtask, which installs the \
             eBPF toolchain and builds it: `cargo xtask build` (or `cargo xtask run -- watch`)",
            obj.display()
        );
    }
    fs::copy(&obj, out.join("leaktrace.bpf.o"))?;
    let tc = root.join("target/ebpf/toolchain.txt");
    println!("cargo:rerun-if-changed={}", tc.display());
    let toolchain = fs::read_to_string(&tc).unwrap_or_else(|_| "unknown nightly".into());
    println!("cargo:rustc-env=LEAKTRACE_EBPF_TOOLCHAIN={}", toolchain.trim());
    Ok(())
}
