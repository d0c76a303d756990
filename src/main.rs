use clap::{CommandFactory, Parser};
use ferry::cli::{Cli, run};

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Some(command) => run(command),
        None => {
            let _ = Cli::command().print_help();
            0
        }
    };
    std::process::exit(code);
}
