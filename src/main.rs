//! The `cwn` command-line tool; see `cwn --help`.

fn main() -> std::process::ExitCode {
    cwn::cli::main()
}
