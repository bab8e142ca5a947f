fn main() {
    println!("{}", serde_json::to_string_pretty(&orchestrate::spec::json_schema()).unwrap());
}
