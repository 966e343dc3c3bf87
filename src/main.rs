//! The `cwn` command-line tool; see `cwn --help`. The command line belongs to the binary: the
//! library's API is what it drives.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
