//! Build script: compiles the vendored, thread-safe METIS 5.1.0 (`vendor/metis`, see its
//! `PATCHES.md`) into a static library; with the `mpi` feature it also generates the MUMPS FFI
//! (the `DMUMPS_STRUC_C` struct and `dmumps_c`) from the installed `dmumps_c.h` with bindgen, so
//! the struct layout always matches the library being linked, and links `dmumps` and
//! `mumps_common`.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    metis::compile();
    #[cfg(feature = "mpi")]
    mumps::generate();
}

/// METIS 5.1.0 and the part of GKlib it uses, with 32-bit indices and reals, GKlib's own random
/// generator (`USE_GKRAND`, made thread-local by the patch) and assertions off. Always optimized:
/// the test profile builds this crate without optimization, and METIS at `-O0` is several times
/// slower.
mod metis {
    use std::path::Path;

    const LIBMETIS: &[&str] = &[
        "auxapi",
        "balance",
        "bucketsort",
        "checkgraph",
        "coarsen",
        "compress",
        "contig",
        "debug",
        "fm",
        "fortran",
        "frename",
        "gklib",
        "graph",
        "initpart",
        "kmetis",
        "kwayfm",
        "kwayrefine",
        "mcutil",
        "mesh",
        "meshpart",
        "minconn",
        "mincover",
        "mmd",
        "ometis",
        "options",
        "parmetis",
        "pmetis",
        "refine",
        "separator",
        "sfm",
        "srefine",
        "stat",
        "timing",
        "util",
        "wspace",
    ];
    const GKLIB: &[&str] = &[
        "b64",
        "blas",
        "cache",
        "csr",
        "error",
        "evaluate",
        "fkvkselect",
        "fs",
        "getopt",
        "gk_util",
        "gkregex",
        "graph",
        "htable",
        "io",
        "itemsets",
        "mcore",
        "memory",
        "pqueue",
        "random",
        "rw",
        "seq",
        "sort",
        "string",
        "timers",
        "tokenizer",
    ];

    pub fn compile() {
        let root = Path::new("vendor/metis");
        println!("cargo:rerun-if-changed={}", root.display());
        let (libmetis, gklib) = (root.join("libmetis"), root.join("GKlib"));
        let mut build = cc::Build::new();
        build
            .define("IDXTYPEWIDTH", "32")
            .define("REALTYPEWIDTH", "32")
            .define("USE_GKRAND", None)
            .define("NDEBUG", None)
            .define("NDEBUG2", None)
            .include(root.join("include"))
            .include(&libmetis)
            .include(&gklib)
            .files(LIBMETIS.iter().map(|f| libmetis.join(format!("{f}.c"))))
            .files(GKLIB.iter().map(|f| gklib.join(format!("{f}.c"))))
            .opt_level(2)
            .warnings(false);
        let target = std::env::var("TARGET").unwrap_or_default();
        if target.contains("windows") {
            build
                .file(gklib.join("win32/adapt.c"))
                .include(gklib.join("win32"))
                .define("USE_GKREGEX", None)
                .define("WIN32", None)
                .define("__thread", "__declspec(thread)");
            if target.contains("msvc") {
                build
                    .define("MSC", None)
                    .define("_CRT_SECURE_NO_WARNINGS", None)
                    .flag("/FImath.h");
            }
        } else if target.contains("linux") {
            build
                .define("LINUX", None)
                .define("_FILE_OFFSET_BITS", "64");
        } else if target.contains("apple") {
            build.define("MACOS", None);
        }
        build.compile("sparsegrad_metis");
    }
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
