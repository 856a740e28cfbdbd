//! Human output of `stats` and `show` with hostile or unusual text: control
//! characters, invalid UTF-8, wide characters, and an entry from the future.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::FileExt;
use std::process::Output;
use std::time::{SystemTime, UNIX_EPOCH};

use cacheback::store::entry::FINISHED_OFFSET;
use serde_json::Value;

use crate::harness::*;

/// Bytes a terminal would act on: C0 controls other than newline and tab,
/// DEL, and C1 controls (UTF-8 encoded, or as lone 8-bit bytes).
#[track_caller]
fn assert_inert(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for (at, c) in text.char_indices() {
        let active = matches!(c, '\0'..='\x08' | '\x0b'..='\x1f' | '\x7f' | '\u{80}'..='\u{9f}');
        assert!(
            !active,
            "{what}: raw {c:?} at byte {at} reaches the terminal:\n{text}"
        );
    }
    assert!(
        !text.contains('\u{fffd}'),
        "{what}: bytes shown lossily:\n{text}"
    );
}

#[track_caller]
fn ok(output: Output) -> String {
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output)
}

/// `cacheback run` with arguments that need not be UTF-8.
fn run_os(cache: &Cache, args: &[&OsStr]) -> Output {
    cache.cmd().arg("run").args(args).bounded_output()
}

fn os(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

#[test]
fn controls_in_labels_argv_and_key_inputs_are_escaped() {
    let cache = Cache::new();
    let label = "evil\x1b]0;pwned\x07\r\u{9b}2J";
    cache.run(&["--ttl", "1h", "--name", label, "--", "echo", "a"]);
    let argv = ["printf", "%s", "\x1b[2J\x07x\r"];
    cache.run(&[&["--ttl", "1h", "--scope", "s\x1bc\x07", "--"][..], &argv].concat());
    // The other key inputs: a working directory, an environment variable
    // name and a --modtime path, each with an ESC and a BEL in it.
    let dir = cache.work().join("d\x1b[31m\x07");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("f\x1b\x07"), "").unwrap();
    let keyed = |command: &str| {
        let mut cmd = cache.cmd();
        cmd.current_dir(&dir)
            .env("E\x1bV\x07", "1")
            .arg(command)
            .args(["--cwd", "--env", "E\x1bV\x07", "--modtime", "f\x1b\x07"]);
        cmd
    };
    assert!(
        keyed("run")
            .args(["--ttl", "1h", "--", "echo", "k"])
            .bounded_output()
            .status
            .success()
    );

    let table = cache.cacheback(&["stats"]);
    assert_inert("stats", &table.stdout);
    let table = ok(table);
    assert!(table.contains(r"evil\e]0;pwned\x07\r\u009b2J"), "{table}");
    assert!(table.contains(r"printf %s $'\e[2J\x07x\r'"), "{table}");

    let shown = cache.cacheback(&["show", "--name", label]);
    assert_inert("show --name", &shown.stdout);
    assert!(ok(shown).contains(r"name:         evil\e]0;pwned\x07\r\u009b2J"));

    let shown = cache.cacheback(&[&["show", "--scope", "s\x1bc\x07", "--"][..], &argv].concat());
    assert_inert("show --scope", &shown.stdout);
    let shown = ok(shown);
    assert!(
        shown.contains(r"command:      printf %s $'\e[2J\x07x\r'"),
        "{shown}"
    );
    assert!(shown.contains(r"--scope s\ec\x07"), "{shown}");

    let shown = keyed("show").args(["--", "echo", "k"]).bounded_output();
    assert_inert("show --cwd --env --modtime", &shown.stdout);
    let shown = ok(shown);
    assert!(shown.contains(r"/d\e[31m\x07"), "{shown}");
    assert!(shown.contains(r"--env E\eV\x07"), "{shown}");
    assert!(shown.contains(r"--modtime f\e\x07"), "{shown}");

    // Not found: the label is echoed back, escaped too.
    let missing = cache.cacheback(&["show", "--name", "no\x1b]0;x\x07"]);
    assert_eq!(missing.status.code(), Some(1));
    assert_inert("show error", &missing.stderr);
    assert!(
        stderr(&missing).contains(r"no\e]0;x\x07"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn a_failed_runs_stderr_is_escaped_but_cached_output_is_not() {
    let cache = Cache::new();
    let body = r"printf 'first\tline\n\033]0;pwned\007\033[2J\r\n' >&2; exit 3";
    let failing = [&["--ttl", "1h", "--name", "bad", "--"][..], &sh(body)].concat();
    assert_eq!(cache.run(&failing).status.code(), Some(3));
    assert!(!cache.files(".fail").is_empty(), "a failure record is kept");

    let table = cache.cacheback(&["stats"]);
    assert_inert("stats", &table.stdout);
    let table = ok(table);
    assert!(table.contains(r": exit 3: \e]0;pwned\x07\e[2J"), "{table}");

    let shown = cache.cacheback(&["show", "--name", "bad"]);
    assert_inert("show", &shown.stdout);
    let shown = ok(shown);
    // Lines stay lines and tabs stay tabs; the rest is shown, not obeyed.
    assert!(shown.contains("  | first\tline\n"), "{shown}");
    assert!(shown.contains("  | \\e]0;pwned\\x07\\e[2J\\r\n"), "{shown}");

    // The cached output is data: `show --stdout` and `--stderr` copy it exactly.
    let bytes = b"\x1b[1mbold\x1b[0m\r\n\x07\xff";
    let printing = [
        &["--ttl", "1h", "--name", "raw", "--"][..],
        &sh(r"printf '\033[1mbold\033[0m\r\n\007\377'; printf '\033[2J' >&2"),
    ]
    .concat();
    assert_eq!(cache.run(&printing).stdout, bytes);
    assert_eq!(
        cache
            .cacheback(&["show", "--name", "raw", "--stdout"])
            .stdout,
        bytes
    );
    assert_eq!(
        cache
            .cacheback(&["show", "--name", "raw", "--stderr"])
            .stdout,
        b"\x1b[2J"
    );
    // JSON keeps its own escaping, of the raw text.
    let json: Value =
        serde_json::from_str(&ok(cache.cacheback(&["stats", "--json", "bad"]))).unwrap();
    assert_eq!(
        json["entries"][0]["last_failure"]["stderr_tail"],
        "first\tline\n\x1b]0;pwned\x07\x1b[2J\r\n"
    );
}

#[test]
fn different_invalid_utf8_argvs_look_different() {
    let cache = Cache::new();
    for byte in [b"\xff", b"\xfe"] {
        let args = [
            os(b"--ttl"),
            os(b"1h"),
            os(b"--"),
            os(b"printf"),
            os(b"%s"),
            os(byte),
        ];
        assert!(run_os(&cache, &args).status.success());
    }
    let table = cache.cacheback(&["stats"]);
    assert_inert("stats", &table.stdout);
    let table = ok(table);
    assert!(table.contains(r"printf %s $'\xff'"), "{table}");
    assert!(table.contains(r"printf %s $'\xfe'"), "{table}");

    let command: Vec<OsString> = ["show", "--", "printf", "%s"]
        .iter()
        .map(OsString::from)
        .chain([OsString::from_vec(b"\xfe".to_vec())])
        .collect();
    let shown = cache.cmd().args(&command).bounded_output();
    assert_inert("show", &shown.stdout);
    assert!(ok(shown).contains(r"command:      printf %s $'\xfe'"));

    // A --modtime path that is not UTF-8 either.
    let path = cache.work().join(os(b"m\xe9"));
    fs::write(&path, "").unwrap();
    let args = [
        os(b"--ttl"),
        os(b"1h"),
        os(b"--modtime"),
        path.as_os_str(),
        os(b"--name"),
        os(b"m"),
        os(b"--"),
        os(b"true"),
    ];
    assert!(run_os(&cache, &args).status.success());
    let shown = cache.cacheback(&["show", "--name", "m"]);
    assert_inert("show", &shown.stdout);
    assert!(ok(shown).contains(r"/m\xe9 ("));
}

/// Terminal columns of the test's strings: CJK and the emoji used take two.
fn columns(text: &str) -> usize {
    text.chars()
        .map(|c| if c >= '\u{1100}' && c != '…' { 2 } else { 1 })
        .sum()
}

#[test]
fn wide_labels_keep_the_table_aligned() {
    let cache = Cache::new();
    let long = "天気予報".repeat(12);
    for name in ["plain", "天気", "🌈 rain", "mixed 天気 🐢 x", long.as_str()] {
        cache.run(&["--ttl", "1h", "--name", name, "--", "echo", name]);
    }
    let table = ok(cache.cacheback(&["stats"]));
    let rows: Vec<&str> = table.lines().take_while(|l| !l.is_empty()).collect();
    assert_eq!(rows.len(), 6, "{table}");
    // Where the STATE column starts, and the AGE column ends, in columns.
    // Both words are 7 bytes with their spaces; AGE is right-aligned.
    let state = |row: &str| row.find(" fresh ").or(row.find(" STATE ")).unwrap();
    let state_at = |row: &str| columns(&row[..state(row)]);
    let age_end = |row: &str| {
        let rest = &row[state(row) + 7..];
        let age = rest.trim_start();
        let end = row.len() - age.len() + age.find(' ').unwrap();
        columns(&row[..end])
    };
    for row in &rows[1..] {
        assert_eq!(state_at(row), state_at(rows[0]), "{table}");
        assert_eq!(age_end(row), age_end(rows[0]), "{table}");
    }
    // The long label is cut within the 40-column limit, between characters.
    let cut = rows
        .iter()
        .find(|row| row.starts_with("天気予報天気予報"))
        .unwrap();
    let title = cut[..cut.find(' ').unwrap()].to_owned();
    assert!(title.ends_with('…'), "{table}");
    assert!(columns(&title) <= 40, "{title}");
    assert!(columns(&title) >= 39, "{title}");
}

/// Moves every entry's finish time to `secs` after now.
fn into_the_future(cache: &Cache, secs: u64) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let future = now.as_millis() as u64 + secs * 1000;
    for path in cache.files(".entry") {
        let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&future.to_le_bytes(), FINISHED_OFFSET)
            .unwrap();
    }
}

#[test]
fn an_entry_from_the_future_is_stale_with_an_unknown_age() {
    let cache = Cache::new();
    cache.run(&["--ttl", "1d", "--name", "ahead", "--", "echo", "a"]);
    cache.run(&[
        "--ttl",
        "1d",
        "--max-age",
        "2d",
        "--name",
        "capped",
        "--",
        "echo",
        "c",
    ]);
    into_the_future(&cache, 3600);
    cache.run(&["--ttl", "1d", "--name", "now", "--", "echo", "n"]);

    let table = ok(cache.cacheback(&["stats"]));
    let row = |name: &str| -> Vec<String> {
        let line = table
            .lines()
            .find(|line| line.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {table}"));
        line.split_whitespace().map(str::to_owned).collect()
    };
    assert_eq!(row("ahead")[1..3], ["stale", "future"], "{table}");
    assert_eq!(row("capped")[1..3], ["expired", "future"], "{table}");
    assert_eq!(row("now")[1], "fresh", "{table}");

    let shown = ok(cache.cacheback(&["show", "--name", "ahead"]));
    assert!(shown.contains("state:        stale\n"), "{shown}");
    assert!(shown.contains("(in the future: age unknown)"), "{shown}");
    assert!(!shown.contains(" ago)"), "{shown}");

    let json: Value = serde_json::from_str(&ok(cache.cacheback(&["stats", "--json"]))).unwrap();
    let entries = json["entries"].as_array().unwrap();
    let entry = |name: &str| entries.iter().find(|e| e["name"] == name).unwrap();
    assert_eq!(entry("ahead")["state"], "stale");
    assert_eq!(entry("ahead")["age_secs"], Value::Null);
    assert_eq!(entry("ahead")["finished_in_future"], true);
    assert!(entry("ahead")["finished_at"].is_string());
    assert_eq!(entry("capped")["state"], "expired");
    assert_eq!(entry("now")["finished_in_future"], false);
    assert!(entry("now")["age_secs"].is_u64());
    assert_eq!(json["totals"]["states"]["stale"], 1);
}
