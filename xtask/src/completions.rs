//! Completion scripts for bash, zsh, fish, elvish and PowerShell.
//!
//! clap_complete writes them; most shells need help with the command that
//! `run` wraps. After `cacheback run --ttl 5m -- gi<TAB>` a user expects what
//! `sudo gi<TAB>` gives: command names, then that command's own completions.
//! zsh gets this from clap_complete (`_cmdambivalent`). bash, fish and elvish
//! do not (bash completes file names, fish and elvish nothing), so their
//! scripts are patched here for every subcommand whose positional carries
//! `ValueHint::CommandWithArguments`. A clap_complete upgrade that changes
//! the patched lines makes generation panic rather than silently drop the fix.
//! PowerShell is left as clap_complete writes it: delegating there needs
//! TabExpansion2 on a slice of the command's AST, which could not be tried
//! here (no pwsh on the development machine).

use std::path::PathBuf;

use clap::{Arg, Command, ValueHint};
use clap_complete::Shell;

use crate::Generated;

const BIN: &str = "cacheback";

/// The five completion scripts, named as each shell looks them up.
pub fn generate(cmd: &Command) -> Vec<Generated> {
    let mut cmd = visible(cmd);
    cmd.build();
    let wrappers = wrapping_subcommands(&cmd);
    [
        (Shell::Bash, "cacheback.bash"),
        (Shell::Zsh, "_cacheback"),
        (Shell::Fish, "cacheback.fish"),
        (Shell::Elvish, "cacheback.elv"),
        (Shell::PowerShell, "_cacheback.ps1"),
    ]
    .into_iter()
    .map(|(shell, name)| {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), BIN, &mut out);
        let script = String::from_utf8(out).expect("clap_complete writes UTF-8");
        let script = match shell {
            Shell::Bash => patch_bash(script, &wrappers),
            Shell::Fish => patch_fish(script, &wrappers),
            Shell::Elvish => patch_elvish(script, &cmd, &wrappers),
            _ => script,
        };
        Generated {
            path: PathBuf::from("completions").join(name),
            contents: script.into_bytes(),
        }
    })
    .collect()
}

/// `cmd` without its hidden subcommands: clap_complete offers
/// hidden subcommands like any other.
fn visible(cmd: &Command) -> Command {
    // clap takes `&'static str` here unless its `string` feature is on, and
    // that feature would reach the binary the tests build (xtask is a
    // dev-dependency). This process generates once and exits: leaking is fine.
    let leak = |text: &str| -> &'static str { Box::leak(text.to_owned().into_boxed_str()) };
    let mut copy = Command::new(leak(cmd.get_name()))
        .args(cmd.get_arguments().cloned())
        .subcommands(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned())
        .propagate_version(cmd.is_propagate_version_set())
        .subcommand_required(cmd.is_subcommand_required_set());
    if let Some(version) = cmd.get_version() {
        copy = copy.version(leak(version));
    }
    if let Some(about) = cmd.get_about() {
        copy = copy.about(about.clone());
    }
    copy
}

/// A subcommand that runs a command given after its own options.
struct Wrapper {
    name: String,
    /// Its options that take a value (`--ttl`, `--cache-dir`, ...), whose
    /// values must be skipped when looking for where the command starts.
    with_value: Vec<String>,
}

fn wrapping_subcommands(cmd: &Command) -> Vec<Wrapper> {
    cmd.get_subcommands()
        .filter(|sub| {
            sub.get_positionals()
                .any(|arg| arg.get_value_hint() == ValueHint::CommandWithArguments)
        })
        .map(|sub| Wrapper {
            name: sub.get_name().to_owned(),
            with_value: options_with_value(sub),
        })
        .collect()
}

/// The spellings (`--ttl`, `-t`) of `cmd`'s options that take a value.
fn options_with_value(cmd: &Command) -> Vec<String> {
    cmd.get_arguments()
        .filter(|arg| !arg.is_positional() && takes_value(arg))
        .flat_map(|arg| {
            let long = arg.get_long().map(|l| format!("--{l}"));
            let short = arg.get_short().map(|s| format!("-{s}"));
            long.into_iter().chain(short)
        })
        .collect()
}

fn takes_value(arg: &Arg) -> bool {
    arg.get_num_args().is_some_and(|n| n.takes_values())
}

const BASH_HELPER: &str = r#"
# Added by cacheback's generator (xtask/src/completions.rs): once the cursor is
# inside the command that `cacheback run` wraps, complete that command as bash
# would on its own, as bash-completion does for sudo, env and timeout.
# $1: the subcommand; $2: its options that take a value.
_cacheback_wrapped() {
    local sub="$1" with_value=" $2 " i=1 word dashdash=
    while [[ $i -lt $COMP_CWORD && ${COMP_WORDS[i]} != "$sub" ]]; do
        (( i++ ))
    done
    (( i++ ))
    while [[ $i -lt $COMP_CWORD ]]; do
        word="${COMP_WORDS[i]}"
        if [[ $word == -- ]]; then
            (( i++ ))
            dashdash=1
            break
        elif [[ $with_value == *" $word "* ]]; then
            # bash splits `--ttl=5m` into `--ttl`, `=`, `5m`.
            if [[ ${COMP_WORDS[i+1]} == = ]]; then (( i += 3 )); else (( i += 2 )); fi
        elif [[ $word == -* ]]; then
            (( i++ ))
        else
            break
        fi
    done
    if [[ $i -gt $COMP_CWORD ]]; then
        return 1
    fi
    if [[ -z $dashdash && $i -eq $COMP_CWORD && ${COMP_WORDS[i]} == -* ]]; then
        return 1
    fi
    if declare -F _comp_command_offset >/dev/null; then
        _comp_command_offset "$i"
    elif declare -F _command_offset >/dev/null; then
        _command_offset "$i"
    elif [[ $i -eq $COMP_CWORD ]]; then
        COMPREPLY=( $(compgen -c -- "${COMP_WORDS[COMP_CWORD]}") )
    else
        COMPREPLY=()
        compopt -o default 2>/dev/null
    fi
    return 0
}
"#;

fn patch_bash(script: String, wrappers: &[Wrapper]) -> String {
    let mut script = script;
    for wrapper in wrappers {
        let label = format!("        {BIN}__subcmd__{})\n", wrapper.name);
        let hook = format!(
            "{label}            _cacheback_wrapped {} \"{}\" && return 0\n",
            wrapper.name,
            wrapper.with_value.join(" ")
        );
        script = replace_once(&script, &label, &hook, "bash");
    }
    if !wrappers.is_empty() {
        script.push_str(BASH_HELPER);
    }
    script
}

const FISH_HELPER: &str = r#"
# Added by cacheback's generator (xtask/src/completions.rs): once the cursor is
# inside the command that `cacheback run` wraps, complete that command as fish
# would on its own, as it does for sudo and env.
# $argv: the subcommand, then its options that take a value. Prints the index in
# `commandline -opc` where the command starts; fails when the cursor is not in it.
function __fish_cacheback_command_start
    set -l tokens (commandline -opc)
    set -l i (contains -i -- $argv[1] $tokens); or return 1
    set -l with_value $argv[2..-1]
    set i (math $i + 1)
    while test $i -le (count $tokens)
        set -l token $tokens[$i]
        if test "$token" = --
            echo (math $i + 1)
            return 0
        else if contains -- $token $with_value
            set i (math $i + 2)
        else if string match -q -- '-*' $token
            set i (math $i + 1)
        else
            echo $i
            return 0
        end
    end
    test $i -eq (math (count $tokens) + 1); or return 1
    string match -q -- '-*' (commandline -ct); and return 1
    echo $i
end

function __fish_cacheback_in_command
    __fish_cacheback_command_start $argv >/dev/null
end

function __fish_cacheback_complete_command
    set -l start (__fish_cacheback_command_start $argv); or return
    set -l tokens (commandline -opc)
    set -l command (commandline -ct)
    if test $start -le (count $tokens)
        set command $tokens[$start..-1] $command
    end
    __fish_complete_subcommand --commandline $command
end
"#;

fn patch_fish(script: String, wrappers: &[Wrapper]) -> String {
    let mut script = script;
    for wrapper in wrappers {
        let args = format!("{} {}", wrapper.name, wrapper.with_value.join(" "));
        // The subcommand's own options must not be offered inside the command.
        let condition = format!("-n \"__fish_{BIN}_using_subcommand {}\"", wrapper.name);
        assert!(
            script.contains(&condition),
            "fish completions: clap_complete no longer writes `{condition}`; \
             update patch_fish in xtask/src/completions.rs"
        );
        script = script.replace(
            &condition,
            &format!(
                "-n \"__fish_{BIN}_using_subcommand {}; and not __fish_cacheback_in_command {args}\"",
                wrapper.name
            ),
        );
        script.push_str(&format!(
            "complete -c {BIN} -n \"__fish_cacheback_in_command {args}\" -f -a \"(__fish_cacheback_complete_command {args})\"\n"
        ));
    }
    if !wrappers.is_empty() {
        script.push_str(FISH_HELPER);
    }
    script
}

const ELVISH_HELPER: &str = r#"
    # Added by cacheback's generator (xtask/src/completions.rs): once the cursor
    # is inside the command that `cacheback run` wraps, complete that command as
    # elvish would on its own, as edit:complete-sudo does for sudo.
    # $global-with-value: cacheback's options that take a value; $wrappers: map
    # from each wrapping subcommand to its options that take a value. Outputs
    # the index in $words where the command starts, or -1 when the cursor is
    # not in it.
    fn command-start {|words global-with-value wrappers|
        var last = (- (count $words) 1)
        var i = 1
        while (and (< $i $last) (str:has-prefix $words[$i] -)) {
            if (has-value $global-with-value $words[$i]) {
                set i = (+ $i 2)
            } else {
                set i = (+ $i 1)
            }
        }
        if (or (>= $i $last) (not (has-key $wrappers $words[$i]))) {
            put -1
            return
        }
        var with-value = $wrappers[$words[$i]]
        set i = (+ $i 1)
        while (< $i $last) {
            var word = $words[$i]
            if (eq $word --) {
                put (+ $i 1)
                return
            } elif (has-value $with-value $word) {
                set i = (+ $i 2)
            } elif (str:has-prefix $word -) {
                set i = (+ $i 1)
            } else {
                put $i
                return
            }
        }
        if (and (== $i $last) (not (str:has-prefix $words[$i] -))) {
            put $i
        } else {
            put -1
        }
    }
"#;

fn patch_elvish(script: String, cmd: &Command, wrappers: &[Wrapper]) -> String {
    if wrappers.is_empty() {
        return script;
    }
    let list = |options: &[String]| {
        let quoted: Vec<String> = options.iter().map(|o| format!("'{o}'")).collect();
        format!("[{}]", quoted.join(" "))
    };
    let global = list(&options_with_value(cmd));
    let map: Vec<String> = wrappers
        .iter()
        .map(|w| format!("&'{}'={}", w.name, list(&w.with_value)))
        .collect();
    let start = "    var command = 'cacheback'\n";
    let script = replace_once(&script, start, &format!("{ELVISH_HELPER}{start}"), "elvish");
    let lookup = "    $completions[$command]\n";
    let delegate = format!(
        "    var start = (command-start $words {global} [{}])\n    \
         if (>= $start 0) {{\n        \
         edit:complete-sudo {BIN} (all $words[$start..])\n    \
         }} else {{\n        \
         $completions[$command]\n    \
         }}\n",
        map.join(" ")
    );
    replace_once(&script, lookup, &delegate, "elvish")
}

fn replace_once(script: &str, from: &str, to: &str, shell: &str) -> String {
    assert_eq!(
        script.matches(from).count(),
        1,
        "{shell} completions: clap_complete no longer writes {from:?} exactly once; \
         update xtask/src/completions.rs"
    );
    script.replacen(from, to, 1)
}
