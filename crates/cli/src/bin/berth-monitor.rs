//! `berth-monitor`: the per-container supervisor. Spawned by the engine, one per running
//! container; see `berth_engine::monitor`.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    std::process::exit(berth_engine::monitor::main_with_args(&args));
}
