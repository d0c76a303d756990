fn main() {
    println!("ferry {}: the command line arrives with the engine", env!("CARGO_PKG_VERSION"));
}
