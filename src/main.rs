//! The `posim` binary: a thin shell over [`posim::cli`].

fn main() -> std::process::ExitCode {
    posim::cli::main()
}
