pub fn generate(_cmd: &clap::Command) -> Vec<crate::Generated> {
    Vec::new()
}
