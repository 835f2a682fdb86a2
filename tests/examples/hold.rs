use allowlist_daemon::filter::Filter;
fn main() {
    let path = std::env::args().nth(1);
    let f = match path {
        Some(p) => Filter::load_object(&std::fs::read(p).unwrap(), 1024).unwrap(),
        None => Filter::load(1024).unwrap(),
    };
    println!("loaded");
    std::thread::sleep(std::time::Duration::from_secs(600));
    drop(f);
}
