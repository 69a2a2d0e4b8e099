// The web app is embedded at compile time; a directory path makes cargo rebuild when any
// file under it is added, removed or changed (include_bytes alone misses new files).
fn main() {
    println!("cargo:rerun-if-changed=web");
}
