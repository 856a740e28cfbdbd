//! Man pages: `cacheback.1` and one page per visible subcommand.
//!
//! clap_mangen renders what the clap definition knows (NAME, SYNOPSIS,
//! OPTIONS, SUBCOMMANDS, VERSION). The sections a man page reader expects
//! beyond that are written here once and attached to every page, so a new
//! subcommand gets a complete page without touching this file. Its
//! DESCRIPTION comes from its `long_about` and its EXAMPLES from the
//! `Examples:` block of its `after_help`, the same text `--help` shows.

use std::path::PathBuf;

use clap::Command;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, italic, roman};

use crate::Generated;

/// Every page, the top-level one first.
pub fn generate(cmd: &Command) -> Vec<Generated> {
    let mut root = cmd.clone().disable_help_subcommand(true);
    root.build();
    let subcommands: Vec<&Command> = root
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .collect();
    let names: Vec<String> = subcommands
        .iter()
        .map(|sub| page_name(&root, Some(sub)))
        .collect();

    let mut pages = vec![render(&root, None, &names)];
    for sub in &subcommands {
        pages.push(render(sub, Some(&root), &names));
    }
    pages
}

/// `cacheback` or `cacheback-run`, the name a page is filed under.
fn page_name(root: &Command, sub: Option<&Command>) -> String {
    match sub {
        None => root.get_name().to_owned(),
        Some(sub) => format!("{}-{}", root.get_name(), sub.get_name()),
    }
}

fn render(cmd: &Command, parent: Option<&Command>, subpages: &[String]) -> Generated {
    let name = match parent {
        None => page_name(cmd, None),
        Some(root) => page_name(root, Some(cmd)),
    };
    let man = Man::new(cmd.clone())
        .title(name.to_uppercase())
        .source(source(cmd, parent));
    let mut out = Vec::new();
    let clap_part =
        |out: &mut Vec<u8>, f: fn(&Man, &mut dyn std::io::Write) -> std::io::Result<()>| {
            f(&man, out).expect("writing to a Vec cannot fail");
        };
    clap_part(&mut out, Man::render_title);
    clap_part(&mut out, Man::render_name_section);
    clap_part(&mut out, Man::render_synopsis_section);

    let mut roff = Roff::new();
    roff.control("SH", ["DESCRIPTION"]);
    if let Some(text) = cmd.get_long_about().or_else(|| cmd.get_about()) {
        prose(&mut roff, &text.to_string());
    }
    if parent.is_none() {
        the_three_cases(&mut roff);
    }
    write(&mut out, &roff);

    if cmd.get_arguments().any(|arg| !arg.is_hide_set()) {
        clap_part(&mut out, Man::render_options_section);
    }
    if cmd.get_subcommands().any(|sub| !sub.is_hide_set()) {
        clap_part(&mut out, Man::render_subcommands_section);
    }

    let mut roff = Roff::new();
    exit_status(&mut roff);
    environment(&mut roff);
    files(&mut roff);
    if let Some(text) = cmd.get_after_long_help().or_else(|| cmd.get_after_help()) {
        examples(&mut roff, &text.to_string());
    }
    see_also(
        &mut roff,
        &name,
        parent.map(|root| root.get_name()),
        subpages,
    );
    write(&mut out, &roff);
    if cmd.get_version().is_some() {
        clap_part(&mut out, Man::render_version_section);
    }

    Generated {
        path: PathBuf::from("man").join(format!("{name}.1")),
        contents: without_repeated_preambles(out),
    }
}

/// `cacheback 0.1.0` on every page (clap_mangen would put `run 0.1.0` on
/// a subcommand's).
fn source(cmd: &Command, parent: Option<&Command>) -> String {
    let root = parent.unwrap_or(cmd);
    let version = root.get_version().unwrap_or_default();
    format!("{} {version}", root.get_name())
}

fn write(out: &mut Vec<u8>, roff: &Roff) {
    roff.to_writer(out).expect("writing to a Vec cannot fail");
}

/// Every `Roff` writes the same two-line apostrophe preamble; one is enough.
fn without_repeated_preambles(out: Vec<u8>) -> Vec<u8> {
    let text = String::from_utf8(out).expect("roff output is UTF-8");
    let preamble = Roff::new().render();
    let body = text.replace(&preamble, "");
    format!("{preamble}{body}").into_bytes()
}

/// `--help` prose as roff: blank lines start paragraphs, and indented
/// `Tag  text` lines (two spaces after the tag) become tagged paragraphs.
fn prose(roff: &mut Roff, text: &str) {
    for line in text.lines() {
        let indented = line.strip_prefix("  ").map(str::trim_start);
        match indented.and_then(|rest| rest.split_once("  ")) {
            Some((tag, body)) => {
                roff.control("TP", []);
                roff.text([bold(tag)]);
                roff.text([roman(body.trim_start())]);
            }
            None if line.trim().is_empty() => {
                roff.control("PP", []);
            }
            None => {
                roff.text([roman(line.trim())]);
            }
        }
    }
}

fn tagged(roff: &mut Roff, tag: impl Into<Vec<clap_mangen::roff::Inline>>, body: &str) {
    roff.control("TP", []);
    roff.text(tag);
    roff.text([roman(body)]);
}

fn the_three_cases(roff: &mut Roff) {
    roff.control("SS", ["Fresh, stale and miss"]);
    roff.text([
        roman("Each call of "),
        bold("cacheback run"),
        roman(" finds one of three cases for its entry:"),
    ]);
    tagged(
        roff,
        [bold("fresh hit")],
        "The entry is younger than --ttl. Its stdout, stderr and exit status are \
         replayed at once; the command does not run.",
    );
    tagged(
        roff,
        [bold("stale hit")],
        "The entry is older than --ttl. It is replayed at once all the same, and one \
         detached background process reruns the command and replaces the entry. Callers \
         never wait for it, and a file lock lets only one refresh run at a time.",
    );
    tagged(
        roff,
        [bold("miss")],
        "There is no entry, or it is older than --max-age. The command runs now, its \
         output streams through as it comes, and a successful result is stored. Callers \
         arriving meanwhile wait for that run and get its result.",
    );
    roff.control("PP", []);
    roff.text([roman(
        "A run that fails (non-zero exit, killed, timed out) never replaces a stored \
         entry: callers keep getting the last good value, and the next background refresh \
         waits 10 s, then 20 s, 40 s and so on, never more than the TTL.",
    )]);
}

fn exit_status(roff: &mut Roff) {
    roff.control("SH", ["EXIT STATUS"]);
    roff.text([roman(
        "When the command ran, or its stored result was replayed, cacheback exits with \
         the command's own status. Otherwise:",
    )]);
    let codes = [
        ("0", "Success; also run --no-wait on a miss."),
        (
            "1",
            "Nothing to act on, e.g. show or invalidate of an unknown entry.",
        ),
        ("2", "The command line could not be parsed."),
        (
            "124",
            "The command ran longer than --timeout and was killed.",
        ),
        ("125", "cacheback itself failed."),
        ("126", "The command was found but could not be executed."),
        ("127", "The command was not found."),
        (
            "128+N",
            "The command, or cacheback during a foreground run, was ended by signal N.",
        ),
    ];
    for (code, meaning) in codes {
        tagged(roff, [bold(code)], meaning);
    }
}

fn environment(roff: &mut Roff) {
    roff.control("SH", ["ENVIRONMENT"]);
    let vars = [
        (
            "CACHEBACK_DIR",
            "The cache directory, when set to an absolute path. --cache-dir wins over it.",
        ),
        (
            "XDG_CACHE_HOME",
            "Without either, the cache directory is $XDG_CACHE_HOME/cacheback, or \
             ~/.cache/cacheback when XDG_CACHE_HOME is unset, empty or relative.",
        ),
        (
            "CACHEBACK_REFRESH_TIMEOUT",
            "Time limit for background refreshes of commands run without --timeout \
             (a duration such as 90s or 10m; default 10m).",
        ),
        (
            "NO_COLOR",
            "When set and not empty, output is never coloured. Colour is only ever used \
             when standard output is a terminal.",
        ),
    ];
    for (name, meaning) in vars {
        tagged(roff, [bold(name)], meaning);
    }
    roff.control("PP", []);
    roff.text([roman(
        "The command itself runs with the caller's environment unchanged; --env NAME \
         makes the value of NAME part of the entry's key.",
    )]);
}

fn files(roff: &mut Roff) {
    roff.control("SH", ["FILES"]);
    tagged(
        roff,
        [italic("$XDG_CACHE_HOME/cacheback/")],
        "The cache directory (see ENVIRONMENT), created with mode 0700; every file in \
         it is 0600, because cached output can hold secrets. Per entry, named by a \
         64-digit hexadecimal key:",
    );
    let entries = [
        (
            "KEY.entry",
            "The last good result: a versioned header, then stdout and stderr.",
        ),
        ("KEY.fail", "The last failed run, in the same format."),
        (
            "KEY.lock",
            "The single-flight lock (flock(2); the kernel drops it when its holder dies) \
             and the counter totals: what happened under the lock, and the folded hits.",
        ),
        (
            "KEY.events, KEY.events.old",
            "One byte per hit, folded into the totals by refreshes.",
        ),
        (
            ".tmp-*",
            "Results being written, renamed into place when complete.",
        ),
    ];
    roff.control("RS", []);
    for (file, meaning) in entries {
        tagged(roff, [italic(file)], meaning);
    }
    roff.control("RE", []);
}

/// The `Examples:` block of `after_help`: `# comment` lines become
/// paragraphs, other lines are shown as typed.
fn examples(roff: &mut Roff, after_help: &str) {
    let mut lines = after_help
        .lines()
        .skip_while(|line| line.trim() != "Examples:");
    if lines.next().is_none() {
        return;
    }
    roff.control("SH", ["EXAMPLES"]);
    let block = lines.take_while(|line| line.trim().is_empty() || line.starts_with(' '));
    let mut in_commands = false;
    for line in block {
        let line = line.trim();
        let comment = line.strip_prefix('#').map(str::trim);
        if in_commands && (line.is_empty() || comment.is_some()) {
            roff.control("fi", []);
            roff.control("RE", []);
            in_commands = false;
        }
        if let Some(comment) = comment {
            roff.control("PP", []);
            roff.text([roman(comment)]);
        } else if !line.is_empty() {
            if !in_commands {
                roff.control("PP", []);
                roff.control("RS", ["4"]);
                roff.control("nf", []);
                in_commands = true;
            }
            roff.text([roman(line)]);
        }
    }
    if in_commands {
        roff.control("fi", []);
        roff.control("RE", []);
    }
}

fn see_also(roff: &mut Roff, this: &str, root: Option<&str>, subpages: &[String]) {
    roff.control("SH", ["SEE ALSO"]);
    let mut refs: Vec<String> = root.iter().map(|r| format!("{r}(1)")).collect();
    refs.extend(
        subpages
            .iter()
            .filter(|page| page.as_str() != this)
            .map(|page| format!("{page}(1)")),
    );
    refs.extend(["env(1)", "timeout(1)", "flock(2)"].map(String::from));
    roff.text([roman(refs.join(", "))]);
}
