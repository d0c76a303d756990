use clap::{CommandFactory, Parser};
use ferry::cli::{Cli, Command, run};

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Some(command) => run(command),
        // No command opens the desktop window, like `ferry gui`; a build without it prints help.
        None if cfg!(feature = "gui") => run(Command::Gui),
        None => {
            let _ = Cli::command().print_help();
            0
        }
    };
    std::process::exit(code);
}
