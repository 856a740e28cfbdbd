
use builtin;
use str;

set edit:completion:arg-completer[cacheback] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'cacheback'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'cacheback'= {
            cand --cache-dir 'Cache directory [default: $CACHEBACK_DIR, else $XDG_CACHE_HOME/cacheback]'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand run 'Print a command''s cached output, refreshing it in the background when stale'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cacheback;run'= {
            cand --ttl 'Required: serve the entry without refreshing while younger than this (e.g. 900, 90s, 15m, 1h, 7d)'
            cand --max-age 'Treat an entry older than this as missing: never serve it, run the command [default: never]'
            cand --timeout 'Kill the command (its whole process group) after this long; counts as a failure, exit 124 [default: none when run in the foreground, 10m for background refreshes]'
            cand --placeholder 'Text printed on a miss with --no-wait [default: nothing]'
            cand --name 'Human name for the entry, for `stats`, `show` and `invalidate` (not part of the key)'
            cand --env 'Key on the value of environment variable NAME (repeatable; stored only as a hash)'
            cand --modtime 'Key on the modification time of FILE (repeatable), so editing it starts a new entry'
            cand --scope 'Key on a namespace, to keep otherwise identical commands apart'
            cand --cache-dir 'Cache directory [default: $CACHEBACK_DIR, else $XDG_CACHE_HOME/cacheback]'
            cand --no-wait 'On a miss, print the --placeholder at once and run the command in the background'
            cand --force 'Run the command now, store and print its result, whatever the cache holds'
            cand --cache-failures 'Store results that exit non-zero too (by default only successes are stored)'
            cand --cwd 'Key on the working directory: each directory gets its own entry'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cacheback;help'= {
            cand run 'Print a command''s cached output, refreshing it in the background when stale'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cacheback;help;run'= {
        }
        &'cacheback;help;help'= {
        }
    ]
    $completions[$command]
}
