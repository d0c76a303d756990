use clap::Parser;
use ferry::cli::{Cli, Command, run};

fn main() {
    let cli = Cli::parse();
    // No command opens the desktop window, like `ferry gui`.
    let code = run(cli.command.unwrap_or(Command::Gui));
    std::process::exit(code);
}
