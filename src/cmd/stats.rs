//! `cacheback stats`: every entry with its state and counters, as a table or JSON.
//!
//! The JSON schema is documented in docs/reference.md and kept stable: fields may be
//! added, never renamed or removed.

use std::cmp::Reverse;
use std::io::Write;

use serde::Serialize;

use crate::cli::{StatsArgs, StatsSort};
use crate::display;
use crate::error::{Error, Result};
use crate::exit_codes;
use crate::inspect::{self, EntryInfo, State};
use crate::output;
use crate::store::FsStore;
use crate::two_tier::{self, FleetEntry, FleetSettings};
use crate::units::{format_duration, format_duration_brief, format_size, format_utc};

/// Widest the label/command column gets before it is cut.
const TITLE_WIDTH: usize = 40;
/// Widest the last-failure message gets before it is cut.
const FAILURE_WIDTH: usize = 60;

/// What to do about a directory cacheback cannot write.
const DIR_FIX: &str = "set CACHEBACK_DIR (or pass --cache-dir) to a directory you can write";

/// Why the cache directory cannot serve, as `stats` says it: the store's
/// own reasons, made true for a directory that cannot be created (its
/// reason would say the first run creates it) or written (every run then
/// warns and runs uncached).
fn dir_problem(store: &FsStore) -> Result<Option<String>> {
    use std::os::unix::ffi::OsStrExt;
    let dir = store.dir();
    let problem = match store.problem() {
        Ok(problem) => problem,
        Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
            return Ok(Some(format!("cannot be read ({}); {DIR_FIX}", plain(&err))));
        }
        Err(err) => return Err(Error::path(dir, err)),
    };
    let missing = std::fs::symlink_metadata(dir).is_err();
    if missing {
        // The nearest directory that exists is where the first run would
        // create it (with its missing parents).
        let parent = dir.ancestors().skip(1).find(|up| up.is_dir());
        if let Some(parent) = parent
            && let Err(err) = writable(parent)
        {
            return Ok(Some(format!(
                "does not exist, and cannot be created: {} is not writable ({}); {DIR_FIX}",
                display::escape_bytes(parent.as_os_str().as_bytes()),
                plain(&err)
            )));
        }
    } else if problem.is_none()
        && let Err(err) = writable(dir)
    {
        return Ok(Some(format!(
            "not writable ({}): every run warns and runs uncached; {DIR_FIX}",
            plain(&err)
        )));
    }
    Ok(problem.map(str::to_owned))
}

/// An I/O error's text without its "(os error N)", for a message in parentheses.
fn plain(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// Whether this user may create files in `dir` (the kernel's answer, which
/// knows read-only mounts and root's rights).
fn writable(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: a valid NUL-terminated path; access only reads it.
    match unsafe { libc::access(path.as_ptr(), libc::W_OK | libc::X_OK) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Runs `cacheback stats`.
/// `dir_origin` says where the directory's name came from (see
/// [`crate::cache_dir::origin`]), for the line about a directory that cannot serve.
/// With a fleet store, the fleet tier's entries follow the local ones.
pub fn run(
    store: &FsStore,
    args: &StatsArgs,
    dir_origin: &str,
    fleet: &FleetSettings,
) -> Result<u8> {
    let now = crate::clock::now_ms();
    let dir = {
        use std::os::unix::ffi::OsStrExt;
        display::escape_bytes(store.dir().as_os_str().as_bytes()).into_owned()
    };
    // Why the directory cannot serve, said instead of a bare "no cached
    // entries" (a typo in CACHEBACK_DIR, a directory another user owns).
    let problem = dir_problem(store)?;
    let (mut infos, scan) = match inspect::list(store, now) {
        Ok(listed) => listed,
        Err(_) if problem.is_some() => Default::default(),
        Err(err) => return Err(err),
    };
    if let Some(filter) = &args.filter {
        infos.retain(|info| info.matches(filter));
    }
    sort(&mut infos, args.sort, now);
    if args.reverse {
        infos.reverse();
    }
    let shared = fleet_listing(fleet, args)?;
    let text = if args.json {
        let document = Document {
            entries: infos.iter().map(|info| JsonEntry::new(info, now)).collect(),
            totals: Totals::new(&infos, scan.total_bytes),
            dir: store.dir().to_string_lossy().into_owned(),
            dir_problem: problem.clone(),
            fleet: shared.as_ref().map(|listing| JsonFleet::new(listing, now)),
        };
        let mut text = serde_json::to_string_pretty(&document)
            .map_err(|err| Error::io("writing JSON", err.into()))?;
        text.push('\n');
        text
    } else {
        let mut text = table(
            &infos,
            now,
            scan.total_bytes,
            args.filter.is_some(),
            output::colour(),
        );
        match problem {
            Some(problem) if infos.is_empty() => {
                text = text.replacen(
                    "no cached entries\n",
                    &format!(
                        "no cached entries: cache directory {dir} ({dir_origin}): {problem}\n"
                    ),
                    1,
                );
            }
            Some(problem) => {
                text.push_str(&format!(
                    "cache directory {dir} ({dir_origin}): {problem}\n"
                ));
            }
            None => text.push_str(&format!("cache directory: {dir}\n")),
        }
        if let Some(listing) = &shared {
            text.push_str(&fleet_table(listing, now));
        }
        text
    };
    (&*output::stdout())
        .write_all(text.as_bytes())
        .map_err(|err| Error::io("writing to stdout", err))?;
    match shared.and_then(|listing| listing.entries.err()) {
        Some(err) => {
            output::warn(format_args!("{err}"));
            Ok(exit_codes::FAILURE)
        }
        None => Ok(exit_codes::SUCCESS),
    }
}

/// The fleet tier's entries, for `stats`.
struct FleetListing {
    /// The store's address, without its password.
    store: String,
    /// Its key prefix.
    prefix: String,
    /// Its entries, sorted like the local ones, or why they could not be listed.
    entries: std::result::Result<Vec<FleetEntry>, String>,
}

/// Lists the fleet tier when a store is configured (`None` without one); a
/// store that cannot be reached is reported with the listing, a misconfigured
/// one is a usage error.
fn fleet_listing(settings: &FleetSettings, args: &StatsArgs) -> Result<Option<FleetListing>> {
    let Some(config) = settings.resolve().map_err(Error::Usage)? else {
        return Ok(None);
    };
    let entries = two_tier::connect_for_management(settings)
        .map_err(|err| err.to_string())
        .and_then(|connected| {
            let mut connected = connected.expect("a store is configured");
            two_tier::entries(&mut connected.fleet).map_err(|err| err.to_string())
        })
        .map(|mut entries| {
            if let Some(filter) = &args.filter {
                entries.retain(|entry| entry.matches(filter));
            }
            sort_fleet(&mut entries, args.sort);
            if args.reverse {
                entries.reverse();
            }
            entries
        });
    Ok(Some(FleetListing {
        store: config.url.to_string(),
        prefix: config.prefix,
        entries,
    }))
}

/// The fleet rows in the order asked for, as the local ones: by name, oldest
/// first, most copied first (the fleet's reads: a local hit is not counted
/// there), largest first.
fn sort_fleet(entries: &mut [FleetEntry], by: StatsSort) {
    match by {
        StatsSort::Name => entries.sort_by_cached_key(|entry| (entry.title(), entry.key)),
        StatsSort::Age => entries.sort_by_key(|entry| entry.meta.finished_ms),
        StatsSort::Hits => entries.sort_by_key(|entry| Reverse(entry.count("fills"))),
        StatsSort::Size => {
            entries.sort_by_key(|entry| Reverse(entry.meta.stdout_len + entry.meta.stderr_len))
        }
    }
}

/// The fleet section of the table: one row per fleet entry, with the
/// fleet-wide counters (a fresh local hit is never counted there: it does
/// not touch the network).
fn fleet_table(listing: &FleetListing, now: u64) -> String {
    let entries = match &listing.entries {
        Ok(entries) => entries,
        Err(_) => return format!("\nfleet store {}: unavailable\n", listing.store),
    };
    let mut text = format!(
        "\nfleet store {} (keys {}:*): {}\n",
        listing.store,
        listing.prefix,
        match entries.len() {
            0 => "no entries".to_owned(),
            1 => "1 entry".to_owned(),
            n => format!("{n} entries"),
        }
    );
    if entries.is_empty() {
        return text;
    }
    let mut rows = vec![
        [
            "NAME",
            "STATE",
            "AGE",
            "TTL",
            "SIZE",
            "RUNS",
            "COPIES",
            "LAST FAILURE",
        ]
        .map(str::to_owned),
    ];
    for entry in entries {
        let meta = &entry.meta;
        let failure = entry
            .failure
            .as_ref()
            .filter(|failure| failure.finished_ms > meta.finished_ms)
            .map_or_else(String::new, |failure| {
                let line = last_line(&failure.stderr_tail);
                cut(
                    &format!(
                        "{}: exit {}{}{}",
                        ago(now, failure.finished_ms),
                        failure.exit_code,
                        if line.is_empty() { "" } else { ": " },
                        line
                    ),
                    FAILURE_WIDTH,
                )
            });
        rows.push([
            cut(&entry.title(), TITLE_WIDTH),
            entry.state(now).to_owned(),
            now.checked_sub(meta.finished_ms)
                .map_or("future".into(), ms),
            entry.details.as_ref().map_or("-".into(), |details| {
                format_duration_brief(std::time::Duration::from_millis(details.ttl_ms))
            }),
            format_size(meta.stdout_len + meta.stderr_len),
            entry.count("runs").to_string(),
            entry.count("fills").to_string(),
            failure,
        ]);
    }
    let mut widths = [0usize; 8];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(display::width(cell));
        }
    }
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let pad = " ".repeat(widths[i] - display::width(cell));
            if i > 0 {
                line.push_str("  ");
            }
            // Numbers (after NAME and STATE, before LAST FAILURE) align right.
            if (2..7).contains(&i) {
                line.push_str(&pad);
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&pad);
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// The fleet tier in `stats --json`.
#[derive(Serialize)]
struct JsonFleet {
    /// The store's address, without its password.
    store: String,
    prefix: String,
    /// Why it could not be listed, or null.
    error: Option<String>,
    entries: Vec<JsonFleetEntry>,
}

#[derive(Serialize)]
struct JsonFleetEntry {
    key: String,
    name: Option<String>,
    command: Vec<String>,
    state: &'static str,
    age_secs: Option<u64>,
    finished_at: String,
    ttl_secs: Option<u64>,
    size_bytes: u64,
    exit_code: i32,
    duration_ms: u64,
    /// Commands run by any host (under the fleet lease).
    runs: u64,
    /// Values copied from the fleet into a host's cache.
    copies: u64,
    failures: u64,
    last_failure: Option<JsonFleetFailure>,
}

#[derive(Serialize)]
struct JsonFleetFailure {
    time: String,
    exit_code: i32,
    consecutive: u32,
    stderr_tail: String,
}

impl JsonFleet {
    fn new(listing: &FleetListing, now: u64) -> JsonFleet {
        let (entries, error) = match &listing.entries {
            Ok(entries) => (entries.as_slice(), None),
            Err(err) => (&[][..], Some(err.clone())),
        };
        JsonFleet {
            store: listing.store.clone(),
            prefix: listing.prefix.clone(),
            error,
            entries: entries
                .iter()
                .map(|entry| {
                    let meta = &entry.meta;
                    let details = entry.details.as_ref();
                    JsonFleetEntry {
                        key: entry.key.to_hex(),
                        name: details.and_then(|details| details.name.clone()),
                        command: details.map_or_else(Vec::new, |details| {
                            details
                                .inputs
                                .argv
                                .iter()
                                .map(|arg| String::from_utf8_lossy(arg).into_owned())
                                .collect()
                        }),
                        state: entry.state(now),
                        age_secs: now.checked_sub(meta.finished_ms).map(|ms| ms / 1000),
                        finished_at: format_utc(meta.finished_ms),
                        ttl_secs: details.map(|details| details.ttl_ms / 1000),
                        size_bytes: meta.stdout_len + meta.stderr_len,
                        exit_code: meta.exit_code,
                        duration_ms: meta.duration_ms,
                        runs: entry.count("runs"),
                        copies: entry.count("fills"),
                        failures: entry.count("failures"),
                        last_failure: entry.failure.as_ref().map(|failure| JsonFleetFailure {
                            time: format_utc(failure.finished_ms),
                            exit_code: failure.exit_code,
                            consecutive: failure.failures,
                            stderr_tail: String::from_utf8_lossy(&failure.stderr_tail).into_owned(),
                        }),
                    }
                })
                .collect(),
        }
    }
}

fn sort(infos: &mut [EntryInfo], by: StatsSort, now: u64) {
    match by {
        StatsSort::Name => infos.sort_by_cached_key(|info| (info.title(), info.key)),
        // Entries without a stored result (only a failure), or with one of
        // unknown age (from the future), count as oldest.
        StatsSort::Age => infos.sort_by_key(|info| Reverse(info.age_ms(now).unwrap_or(u64::MAX))),
        StatsSort::Hits => infos.sort_by_key(|info| Reverse(hits(info))),
        StatsSort::Size => infos.sort_by_key(|info| Reverse(info.size_bytes)),
    }
}

/// Fresh and stale hits: every read served from the cache.
fn hits(info: &EntryInfo) -> u64 {
    info.counts.hits + info.counts.stale_hits
}

/// Exit status and duration of the newest run, successful or not.
fn last_run(info: &EntryInfo) -> Option<(i32, u64)> {
    match (&info.entry, &info.failure) {
        (Some(_), Some(failure)) if failure.after_entry => {
            Some((failure.exit_code, failure.duration_ms))
        }
        (Some(entry), _) => Some((entry.exit_code, u64::from(entry.duration_ms))),
        (None, Some(failure)) => Some((failure.exit_code, failure.duration_ms)),
        (None, None) => None,
    }
}

/// The last non-empty line of a failed run's stderr, escaped for a terminal.
pub fn last_line(tail: &[u8]) -> String {
    tail.split(|&b| b == b'\n')
        .rev()
        .map(<[u8]>::trim_ascii)
        .find(|line| !line.is_empty())
        .map_or_else(String::new, |line| display::escape_bytes(line).into_owned())
}

/// How long ago `then_ms` was, as `3s ago`; a time in the future (the clock
/// was stepped back) has no such age and says so.
pub fn ago(now: u64, then_ms: u64) -> String {
    if then_ms > now {
        return "in the future".to_owned();
    }
    format!(
        "{} ago",
        format_duration(std::time::Duration::from_millis(now - then_ms))
    )
}

fn ms(duration_ms: u64) -> String {
    format_duration(std::time::Duration::from_millis(duration_ms))
}

/// Cuts text to `width` terminal columns, marking the cut within them.
fn cut(text: &str, width: usize) -> String {
    display::cut(text, width).into_owned()
}

/// ANSI colour of a state in the table.
fn state_colour(state: State) -> &'static str {
    match state {
        State::Fresh => "\x1b[32m",
        State::Stale => "\x1b[33m",
        State::Refreshing => "\x1b[36m",
        State::Expired => "\x1b[35m",
        State::Failing | State::Unreadable => "\x1b[1;31m",
    }
}

/// The NAME column: each entry's label or command line, cut to width; where
/// several rows would read the same (one `git rev-parse` per directory with
/// `--cwd`, say), each also says what it is keyed on, which tells them apart.
fn titles(infos: &[EntryInfo]) -> Vec<String> {
    let plain: Vec<String> = infos.iter().map(EntryInfo::title).collect();
    let mut seen = std::collections::HashMap::<&str, usize>::new();
    for title in &plain {
        *seen.entry(title).or_default() += 1;
    }
    infos
        .iter()
        .zip(&plain)
        .map(|(info, title)| {
            let keyed = info.keyed_on();
            if seen[title.as_str()] > 1 && !keyed.is_empty() {
                format!("{} [{}]", cut(title, TITLE_WIDTH), cut(&keyed, TITLE_WIDTH))
            } else {
                cut(title, TITLE_WIDTH)
            }
        })
        .collect()
}

fn table(infos: &[EntryInfo], now: u64, disk_bytes: u64, filtered: bool, colour: bool) -> String {
    const HEADER: [&str; 9] = [
        "NAME",
        "STATE",
        "AGE",
        "TTL",
        "SIZE",
        "HITS",
        "RUN",
        "EXIT",
        "LAST FAILURE",
    ];
    // Columns after the first two hold numbers and read best right-aligned.
    const RIGHT: [bool; 9] = [false, false, true, true, true, true, true, true, false];
    let mut rows: Vec<[String; 9]> = vec![HEADER.map(str::to_owned)];
    let titles = titles(infos);
    for (info, title) in infos.iter().zip(titles) {
        let (exit, run) = last_run(info).map_or(("-".into(), "-".into()), |(code, duration)| {
            (code.to_string(), ms(duration))
        });
        let failure = match (&info.error, &info.failure) {
            (Some(error), _) => cut(&display::escape(error), FAILURE_WIDTH),
            (None, Some(failure)) => {
                let line = last_line(&failure.stderr_tail);
                let text = format!(
                    "{}: exit {}{}{}",
                    ago(now, failure.finished_ms),
                    failure.exit_code,
                    if line.is_empty() { "" } else { ": " },
                    line
                );
                cut(&text, FAILURE_WIDTH)
            }
            (None, None) => String::new(),
        };
        rows.push([
            title,
            info.state.as_str().to_owned(),
            match info.age_ms(now) {
                Some(age) => ms(age),
                None if info.finished_in_future => "future".into(),
                None => "-".into(),
            },
            info.details.as_ref().map_or("-".into(), |d| {
                format_duration_brief(std::time::Duration::from_millis(d.ttl_ms))
            }),
            format_size(info.size_bytes),
            hits(info).to_string(),
            run,
            exit,
            failure,
        ]);
    }
    let mut widths = [0usize; 9];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(display::width(cell));
        }
    }
    let mut text = String::new();
    if infos.is_empty() {
        rows.clear();
        text.push_str("no cached entries\n");
    }
    for (index, row) in rows.iter().enumerate() {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let pad = " ".repeat(widths[i] - display::width(cell));
            if i > 0 {
                line.push_str("  ");
            }
            if colour && i == 1 && index > 0 {
                // Row 0 is the header; rows follow `infos` one for one.
                line.push_str(state_colour(infos[index - 1].state));
                line.push_str(cell);
                line.push_str("\x1b[0m");
                line.push_str(&pad);
            } else if RIGHT[i] {
                line.push_str(&pad);
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&pad);
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    let totals = Totals::new(infos, disk_bytes);
    let ratio = totals
        .hit_ratio
        .map_or("-".into(), |ratio| format!("{:.1}%", ratio * 100.0));
    let count = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    // Filtered, the whole directory's size would not add up with the rows.
    let bytes = if filtered {
        totals.size_bytes
    } else {
        totals.disk_bytes
    };
    text.push_str(&format!(
        "\n{}, {} on disk, hit ratio {ratio} ({}, {}), {}, {}\n",
        count(totals.entries as u64, "entry", "entries"),
        format_size(bytes),
        count(totals.hits, "hit", "hits"),
        count(totals.misses, "miss", "misses"),
        count(totals.refreshes, "refresh", "refreshes"),
        count(totals.failures, "failure", "failures"),
    ));
    text
}

#[derive(Serialize)]
struct Document {
    entries: Vec<JsonEntry>,
    totals: Totals,
    /// The cache directory read.
    dir: String,
    /// Why it cannot be used (missing, unsafe), or null.
    dir_problem: Option<String>,
    /// The fleet tier, when a store is configured (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    fleet: Option<JsonFleet>,
}

#[derive(Serialize)]
struct JsonEntry {
    key: String,
    name: Option<String>,
    command: Vec<String>,
    state: &'static str,
    error: Option<String>,
    age_secs: Option<u64>,
    finished_in_future: bool,
    ttl_secs: Option<u64>,
    max_age_secs: Option<u64>,
    /// When the stored value goes stale: finish time + TTL + jitter.
    stale_at: Option<String>,
    /// The `--jitter` delay drawn for the stored value.
    jitter_ms: Option<u32>,
    /// What besides the command the key was derived from, as `show` says it.
    keyed_on: String,
    /// The `--cwd` directory, when keyed on it.
    cwd: Option<String>,
    /// The `--scope`, when keyed on one.
    scope: Option<String>,
    finished_at: Option<String>,
    idle_secs: Option<u64>,
    size_bytes: u64,
    stdout_bytes: Option<u64>,
    stderr_bytes: Option<u64>,
    hits: u64,
    fresh_hits: u64,
    stale_hits: u64,
    misses: u64,
    refreshes: u64,
    failures: u64,
    last_exit_code: Option<i32>,
    last_duration_ms: Option<u64>,
    last_failure: Option<JsonFailure>,
}

#[derive(Serialize)]
struct JsonFailure {
    time: String,
    age_secs: u64,
    finished_in_future: bool,
    exit_code: i32,
    duration_ms: u64,
    consecutive: u32,
    stderr_tail: String,
}

impl JsonEntry {
    fn new(info: &EntryInfo, now: u64) -> JsonEntry {
        let secs = |ms: u64| ms / 1000;
        let details = info.details.as_ref();
        let last = last_run(info);
        JsonEntry {
            key: info.key.to_hex(),
            name: info.name().map(str::to_owned),
            command: details.map_or_else(Vec::new, |d| {
                d.inputs
                    .argv
                    .iter()
                    .map(|arg| String::from_utf8_lossy(arg).into_owned())
                    .collect()
            }),
            state: info.state.as_str(),
            error: info.error.clone(),
            age_secs: info.age_ms(now).map(secs),
            finished_in_future: info.finished_in_future,
            ttl_secs: details.map(|d| secs(d.ttl_ms)),
            max_age_secs: details.and_then(|d| d.max_age_ms).map(secs),
            stale_at: info.stale_at_ms().map(format_utc),
            jitter_ms: info.entry.map(|entry| entry.jitter_ms),
            keyed_on: info.keyed_on(),
            cwd: details
                .and_then(|d| d.inputs.cwd.as_ref())
                .map(|cwd| String::from_utf8_lossy(cwd).into_owned()),
            scope: details.and_then(|d| d.inputs.scope.clone()),
            finished_at: info.entry.map(|entry| format_utc(entry.finished_ms)),
            idle_secs: match info.last_read_ms() {
                0 => None,
                at => Some(secs(now.saturating_sub(at))),
            },
            size_bytes: info.size_bytes,
            stdout_bytes: info.entry.map(|entry| entry.stdout_len),
            stderr_bytes: info.entry.map(|entry| entry.stderr_len),
            hits: hits(info),
            fresh_hits: info.counts.hits,
            stale_hits: info.counts.stale_hits,
            misses: info.counts.misses,
            refreshes: info.counts.refreshes,
            failures: info.counts.failures,
            last_exit_code: last.map(|(code, _)| code),
            last_duration_ms: last.map(|(_, duration)| duration),
            last_failure: info.failure.as_ref().map(|failure| JsonFailure {
                time: format_utc(failure.finished_ms),
                // Kept an integer (the schema is stable): 0 when in the
                // future, which `finished_in_future` tells apart.
                age_secs: secs(now.saturating_sub(failure.finished_ms)),
                finished_in_future: failure.finished_ms > now,
                exit_code: failure.exit_code,
                duration_ms: failure.duration_ms,
                consecutive: failure.consecutive,
                stderr_tail: String::from_utf8_lossy(&failure.stderr_tail).into_owned(),
            }),
        }
    }
}

#[derive(Serialize)]
struct Totals {
    entries: usize,
    size_bytes: u64,
    disk_bytes: u64,
    hits: u64,
    misses: u64,
    hit_ratio: Option<f64>,
    refreshes: u64,
    failures: u64,
    states: StateCounts,
}

#[derive(Serialize, Default)]
struct StateCounts {
    fresh: usize,
    stale: usize,
    refreshing: usize,
    failing: usize,
    expired: usize,
    unreadable: usize,
}

impl Totals {
    fn new(infos: &[EntryInfo], disk_bytes: u64) -> Totals {
        let sum = |field: fn(&EntryInfo) -> u64| infos.iter().map(field).sum::<u64>();
        let hits = sum(hits);
        let misses = sum(|info| info.counts.misses);
        let mut states = StateCounts::default();
        for info in infos {
            *match info.state {
                State::Fresh => &mut states.fresh,
                State::Stale => &mut states.stale,
                State::Refreshing => &mut states.refreshing,
                State::Failing => &mut states.failing,
                State::Expired => &mut states.expired,
                State::Unreadable => &mut states.unreadable,
            } += 1;
        }
        Totals {
            entries: infos.len(),
            size_bytes: sum(|info| info.size_bytes),
            disk_bytes,
            hits,
            misses,
            hit_ratio: (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64),
            refreshes: sum(|info| info.counts.refreshes),
            failures: sum(|info| info.counts.failures),
            states,
        }
    }
}
