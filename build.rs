//! Build script: only the `mpi` feature does anything — it generates the MUMPS FFI (the
//! `DMUMPS_STRUC_C` struct and `dmumps_c`) from the installed `dmumps_c.h` with bindgen, so the
//! struct layout always matches the library being linked, and links `dmumps` and `mumps_common`.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "mpi")]
    mumps::generate();
}

#[cfg(feature = "mpi")]
mod mumps {
    use std::path::PathBuf;

    pub fn generate() {
        let include = std::env::var("MUMPS_INCLUDE_DIR").unwrap_or_else(|_| "/usr/include".into());
        let header = PathBuf::from(&include).join("dmumps_c.h");
        println!("cargo:rerun-if-env-changed=MUMPS_INCLUDE_DIR");
        println!("cargo:rerun-if-env-changed=MUMPS_LIB_DIR");
        println!("cargo:rerun-if-changed={}", header.display());
        if !header.exists() {
            panic!(
                "feature `mpi`: {} not found. Install MUMPS (Debian: apt-get install -y libmumps-dev \
                 libopenmpi-dev openmpi-bin libclang-dev) or set MUMPS_INCLUDE_DIR.",
                header.display()
            );
        }
        if let Ok(dir) = std::env::var("MUMPS_LIB_DIR") {
            println!("cargo:rustc-link-search=native={dir}");
        }
        println!("cargo:rustc-link-lib=dmumps");
        println!("cargo:rustc-link-lib=mumps_common");
        let bindings = bindgen::Builder::default()
            .header(header.to_string_lossy())
            .clang_arg(format!("-I{include}"))
            .allowlist_type("DMUMPS_STRUC_C")
            .allowlist_function("dmumps_c")
            .derive_default(false)
            .layout_tests(true)
            .generate()
            .expect("bindgen could not read dmumps_c.h");
        let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
        bindings
            .write_to_file(out.join("dmumps.rs"))
            .expect("writing the MUMPS bindings");
    }
}
