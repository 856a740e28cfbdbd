# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_cacheback_global_optspecs
    string join \n cache-dir= h/help V/version
end

function __fish_cacheback_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_cacheback_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_cacheback_using_subcommand
    set -l cmd (__fish_cacheback_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c cacheback -n "__fish_cacheback_needs_command" -l cache-dir -d 'Cache directory [default: $CACHEBACK_DIR, else $XDG_CACHE_HOME/cacheback]' -r -f -a "(__fish_complete_directories)"
complete -c cacheback -n "__fish_cacheback_needs_command" -s h -l help -d 'Print help'
complete -c cacheback -n "__fish_cacheback_needs_command" -s V -l version -d 'Print version'
complete -c cacheback -n "__fish_cacheback_needs_command" -f -a "run" -d 'Print a command\'s cached output, refreshing it in the background when stale'
complete -c cacheback -n "__fish_cacheback_needs_command" -f -a "stats" -d 'List cached entries with their state, age, counters and last failure'
complete -c cacheback -n "__fish_cacheback_needs_command" -f -a "show" -d 'Show one entry\'s metadata, or with --stdout/--stderr its cached output'
complete -c cacheback -n "__fish_cacheback_needs_command" -f -a "invalidate" -d 'Remove entries so the next `run` is a miss, or with --refresh mark them stale and refresh'
complete -c cacheback -n "__fish_cacheback_needs_command" -f -a "warm" -d 'Start a background run now and return at once, to pre-fill the cache'
complete -c cacheback -n "__fish_cacheback_needs_command" -f -a "gc" -d 'Remove entries not read for a while, shrink the cache to a size, clean leftovers'
complete -c cacheback -n "__fish_cacheback_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cacheback -n "__fish_cacheback_using_subcommand run; and not __fish_cacheback_in_command run --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --placeholder --name --env --modtime --hash --scope" -l cache-dir -d 'Cache directory [default: $CACHEBACK_DIR, else $XDG_CACHE_HOME/cacheback]' -r -f -a "(__fish_complete_directories)"
complete -c cacheback -n "__fish_cacheback_using_subcommand run; and not __fish_cacheback_in_command run --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --placeholder --name --env --modtime --hash --scope" -l ttl -d 'Required (or CACHEBACK_TTL): serve the entry without refreshing while younger than this (e.g. 900, 90s, 15m, 1h30m, 1.5h, 7d); 0 refreshes after every call, which still gets the last value at once' -r
complete -c cacheback -n "__fish_cacheback_using_subcommand run; and not __fish_cacheback_in_command run --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --placeholder --name --env --modtime --hash --scope" -l max-age -d 'Treat an entry older than this as missing: never serve it, run the command [default: never]' -r
complete -c cacheback -n "__fish_cacheback_using_subcommand run; and not __fish_cacheback_in_command run --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --placeholder --name --env --modtime --hash --scope" -l timeout -d 'Kill the command (its whole process group) after this long; counts as a failure, exit 124 [default: none when run in the foreground, 10m for background refreshes]' -r
complete -c cacheback -n "__fish_cacheback_using_subcommand run; and not __fish_cacheback_in_command run --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --placeholder --name --env --modtime --hash --scope" -l jitter -d 'Make each stored value go stale later by a random part of this (a percentage of the TTL such as 10%, or a duration), so entries stored together are not refreshed together' -r
complete -c cacheback -n "__fish_cacheback_using_subcommand run; and not __fish_cacheback_in_command run --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --placeholder --name --env --modtime --hash --scope" -l stale-marker -d 'Print TEXT after a value that is past its TTL or whose last refresh failed, before the output\'s final newline; {age} becomes its age (2h3m), {state} `stale` or `failing` [env: CACHEBACK_STALE_MARKER]' -r
complete -c cacheback -n "__fish_cacheback_using_subcommand run; and not __fish_cacheback_in_command run --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --placeholder --name --env --modtime --hash --scope" -l on-refresh -d 'After a background refresh stores output different from before, run CMD with `sh -c`, detached, with CACHEBACK_NAME and CACHEBACK_KEY set (e.g. \'pkill -RTMIN+8 i3blocks\')' -r
complete -c cacheback -n "__fish_cacheback_using_subcommand run; and not __fish_cacheback_in_command run --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --placeholder --name --env --modtime --hash --scope" -l placeholder -d 'Text printed on a miss with --no-wait [default: nothing]' -r
complete -c cacheback -n "__fish_cacheback_using_subcommand run; and not __fish_cacheback_in_command run --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --placeholder --name --env --modtime --hash --scope" -l name -d 'Human name for the entry, for `stats`, `show` and `invalidate` (not part of the key)' -r
complete -c cacheback -n "__fish_cacheback_using_subcommand run; and not __fish_cacheback_in_command run --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --placeholder --name --env --modtime --hash --scope" -l env -d 'Key on the value of environment variable NAME (repeatable; stored only as a hash)' -r
complete -c cacheback -n "__fish_cacheback_using_subcommand run; and not __fish_cacheback_in_command run --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --placeholder --name --env --modtime --hash --scope" -l modtime -d 'Key on the modification time of FILE (repeatable), so editing it starts a new entry' -r -F
complete -c cacheback -n "__fish_cacheback_using_subcommand run; and not __fish_cacheback_in_command run --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --placeholder --name --env --modtime --hash --scope" -l hash -d 'Key on the content of FILE (repeatable): unlike --modtime, a checkout that rewrites the file with the same bytes keeps the entry' -r -F
complete -c cacheback -n "__fish_cacheback_using_subcommand run; and not __fish_cacheback_in_command run --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --placeholder --name --env --modtime --hash --scope" -l scope -d 'Key on a namespace, to keep otherwise identical commands apart [env: CACHEBACK_SCOPE]' -r
complete -c cacheback -n "__fish_cacheback_using_subcommand run; and not __fish_cacheback_in_command run --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --placeholder --name --env --modtime --hash --scope" -l no-wait -d 'On a miss, print the --placeholder at once and run the command in the background'
complete -c cacheback -n "__fish_cacheback_using_subcommand run; and not __fish_cacheback_in_command run --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --placeholder --name --env --modtime --hash --scope" -l force -d 'Run the command now, store and print its result, whatever the cache holds'
complete -c cacheback -n "__fish_cacheback_using_subcommand run; and not __fish_cacheback_in_command run --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --placeholder --name --env --modtime --hash --scope" -l cache-failures -d 'Store results that exit non-zero too (by default only successes are stored)'
complete -c cacheback -n "__fish_cacheback_using_subcommand run; and not __fish_cacheback_in_command run --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --placeholder --name --env --modtime --hash --scope" -l cwd -d 'Key on the working directory: each directory gets its own entry'
complete -c cacheback -n "__fish_cacheback_using_subcommand run; and not __fish_cacheback_in_command run --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --placeholder --name --env --modtime --hash --scope" -l stdin -d 'Read stdin, key on its content, and give the same bytes to the command and its refreshes (without it the command\'s stdin is /dev/null)'
complete -c cacheback -n "__fish_cacheback_using_subcommand run; and not __fish_cacheback_in_command run --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --placeholder --name --env --modtime --hash --scope" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cacheback -n "__fish_cacheback_using_subcommand run; and not __fish_cacheback_in_command run --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --placeholder --name --env --modtime --hash --scope" -s V -l version -d 'Print version'
complete -c cacheback -n "__fish_cacheback_using_subcommand stats" -l cache-dir -d 'Cache directory [default: $CACHEBACK_DIR, else $XDG_CACHE_HOME/cacheback]' -r -f -a "(__fish_complete_directories)"
complete -c cacheback -n "__fish_cacheback_using_subcommand stats" -l sort -d 'Order of the rows' -r -f -a "name\t'By label, else command line'
age\t'Oldest entry first'
hits\t'Most hits first'
size\t'Largest first'"
complete -c cacheback -n "__fish_cacheback_using_subcommand stats" -l json -d 'Print one JSON document {"entries": [...], "totals": {...}} (schema in README.md)'
complete -c cacheback -n "__fish_cacheback_using_subcommand stats" -l reverse -d 'Reverse the order'
complete -c cacheback -n "__fish_cacheback_using_subcommand stats" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cacheback -n "__fish_cacheback_using_subcommand stats" -s V -l version -d 'Print version'
complete -c cacheback -n "__fish_cacheback_using_subcommand show; and not __fish_cacheback_in_command show --cache-dir --name --env --modtime --hash --scope" -l cache-dir -d 'Cache directory [default: $CACHEBACK_DIR, else $XDG_CACHE_HOME/cacheback]' -r -f -a "(__fish_complete_directories)"
complete -c cacheback -n "__fish_cacheback_using_subcommand show; and not __fish_cacheback_in_command show --cache-dir --name --env --modtime --hash --scope" -l name -d 'The entries labelled LABEL with `run --name`' -r
complete -c cacheback -n "__fish_cacheback_using_subcommand show; and not __fish_cacheback_in_command show --cache-dir --name --env --modtime --hash --scope" -l env -d 'Key on the value of environment variable NAME (repeatable; stored only as a hash)' -r
complete -c cacheback -n "__fish_cacheback_using_subcommand show; and not __fish_cacheback_in_command show --cache-dir --name --env --modtime --hash --scope" -l modtime -d 'Key on the modification time of FILE (repeatable), so editing it starts a new entry' -r -F
complete -c cacheback -n "__fish_cacheback_using_subcommand show; and not __fish_cacheback_in_command show --cache-dir --name --env --modtime --hash --scope" -l hash -d 'Key on the content of FILE (repeatable): unlike --modtime, a checkout that rewrites the file with the same bytes keeps the entry' -r -F
complete -c cacheback -n "__fish_cacheback_using_subcommand show; and not __fish_cacheback_in_command show --cache-dir --name --env --modtime --hash --scope" -l scope -d 'Key on a namespace, to keep otherwise identical commands apart [env: CACHEBACK_SCOPE]' -r
complete -c cacheback -n "__fish_cacheback_using_subcommand show; and not __fish_cacheback_in_command show --cache-dir --name --env --modtime --hash --scope" -l cwd -d 'Key on the working directory: each directory gets its own entry'
complete -c cacheback -n "__fish_cacheback_using_subcommand show; and not __fish_cacheback_in_command show --cache-dir --name --env --modtime --hash --scope" -l stdin -d 'Read stdin, key on its content, and give the same bytes to the command and its refreshes (without it the command\'s stdin is /dev/null)'
complete -c cacheback -n "__fish_cacheback_using_subcommand show; and not __fish_cacheback_in_command show --cache-dir --name --env --modtime --hash --scope" -l stdout -d 'Print the cached stdout instead of the metadata'
complete -c cacheback -n "__fish_cacheback_using_subcommand show; and not __fish_cacheback_in_command show --cache-dir --name --env --modtime --hash --scope" -l stderr -d 'Print the cached stderr instead of the metadata (after stdout with --stdout)'
complete -c cacheback -n "__fish_cacheback_using_subcommand show; and not __fish_cacheback_in_command show --cache-dir --name --env --modtime --hash --scope" -s h -l help -d 'Print help'
complete -c cacheback -n "__fish_cacheback_using_subcommand show; and not __fish_cacheback_in_command show --cache-dir --name --env --modtime --hash --scope" -s V -l version -d 'Print version'
complete -c cacheback -n "__fish_cacheback_using_subcommand invalidate; and not __fish_cacheback_in_command invalidate --cache-dir --name --env --modtime --hash --scope --jobs -j" -l cache-dir -d 'Cache directory [default: $CACHEBACK_DIR, else $XDG_CACHE_HOME/cacheback]' -r -f -a "(__fish_complete_directories)"
complete -c cacheback -n "__fish_cacheback_using_subcommand invalidate; and not __fish_cacheback_in_command invalidate --cache-dir --name --env --modtime --hash --scope --jobs -j" -l name -d 'The entries labelled LABEL with `run --name`' -r
complete -c cacheback -n "__fish_cacheback_using_subcommand invalidate; and not __fish_cacheback_in_command invalidate --cache-dir --name --env --modtime --hash --scope --jobs -j" -l env -d 'Key on the value of environment variable NAME (repeatable; stored only as a hash)' -r
complete -c cacheback -n "__fish_cacheback_using_subcommand invalidate; and not __fish_cacheback_in_command invalidate --cache-dir --name --env --modtime --hash --scope --jobs -j" -l modtime -d 'Key on the modification time of FILE (repeatable), so editing it starts a new entry' -r -F
complete -c cacheback -n "__fish_cacheback_using_subcommand invalidate; and not __fish_cacheback_in_command invalidate --cache-dir --name --env --modtime --hash --scope --jobs -j" -l hash -d 'Key on the content of FILE (repeatable): unlike --modtime, a checkout that rewrites the file with the same bytes keeps the entry' -r -F
complete -c cacheback -n "__fish_cacheback_using_subcommand invalidate; and not __fish_cacheback_in_command invalidate --cache-dir --name --env --modtime --hash --scope --jobs -j" -l scope -d 'Key on a namespace, to keep otherwise identical commands apart [env: CACHEBACK_SCOPE]' -r
complete -c cacheback -n "__fish_cacheback_using_subcommand invalidate; and not __fish_cacheback_in_command invalidate --cache-dir --name --env --modtime --hash --scope --jobs -j" -s j -l jobs -d 'With --refresh: how many refreshes run at once (the rest wait their turn)' -r
complete -c cacheback -n "__fish_cacheback_using_subcommand invalidate; and not __fish_cacheback_in_command invalidate --cache-dir --name --env --modtime --hash --scope --jobs -j" -l cwd -d 'Key on the working directory: each directory gets its own entry'
complete -c cacheback -n "__fish_cacheback_using_subcommand invalidate; and not __fish_cacheback_in_command invalidate --cache-dir --name --env --modtime --hash --scope --jobs -j" -l stdin -d 'Read stdin, key on its content, and give the same bytes to the command and its refreshes (without it the command\'s stdin is /dev/null)'
complete -c cacheback -n "__fish_cacheback_using_subcommand invalidate; and not __fish_cacheback_in_command invalidate --cache-dir --name --env --modtime --hash --scope --jobs -j" -l all -d 'Every entry in the cache'
complete -c cacheback -n "__fish_cacheback_using_subcommand invalidate; and not __fish_cacheback_in_command invalidate --cache-dir --name --env --modtime --hash --scope --jobs -j" -l refresh -d 'Keep serving the entry, marked stale, and start a background refresh now'
complete -c cacheback -n "__fish_cacheback_using_subcommand invalidate; and not __fish_cacheback_in_command invalidate --cache-dir --name --env --modtime --hash --scope --jobs -j" -s h -l help -d 'Print help'
complete -c cacheback -n "__fish_cacheback_using_subcommand invalidate; and not __fish_cacheback_in_command invalidate --cache-dir --name --env --modtime --hash --scope --jobs -j" -s V -l version -d 'Print version'
complete -c cacheback -n "__fish_cacheback_using_subcommand warm; and not __fish_cacheback_in_command warm --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --name --env --modtime --hash --scope --placeholder" -l cache-dir -d 'Cache directory [default: $CACHEBACK_DIR, else $XDG_CACHE_HOME/cacheback]' -r -f -a "(__fish_complete_directories)"
complete -c cacheback -n "__fish_cacheback_using_subcommand warm; and not __fish_cacheback_in_command warm --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --name --env --modtime --hash --scope --placeholder" -l ttl -d 'Required (or CACHEBACK_TTL): serve the entry without refreshing while younger than this (e.g. 900, 90s, 15m, 1h30m, 1.5h, 7d); 0 refreshes after every call, which still gets the last value at once' -r
complete -c cacheback -n "__fish_cacheback_using_subcommand warm; and not __fish_cacheback_in_command warm --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --name --env --modtime --hash --scope --placeholder" -l max-age -d 'Treat an entry older than this as missing: never serve it, run the command [default: never]' -r
complete -c cacheback -n "__fish_cacheback_using_subcommand warm; and not __fish_cacheback_in_command warm --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --name --env --modtime --hash --scope --placeholder" -l timeout -d 'Kill the command (its whole process group) after this long; counts as a failure, exit 124 [default: none when run in the foreground, 10m for background refreshes]' -r
complete -c cacheback -n "__fish_cacheback_using_subcommand warm; and not __fish_cacheback_in_command warm --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --name --env --modtime --hash --scope --placeholder" -l jitter -d 'Make each stored value go stale later by a random part of this (a percentage of the TTL such as 10%, or a duration), so entries stored together are not refreshed together' -r
complete -c cacheback -n "__fish_cacheback_using_subcommand warm; and not __fish_cacheback_in_command warm --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --name --env --modtime --hash --scope --placeholder" -l stale-marker -d 'Print TEXT after a value that is past its TTL or whose last refresh failed, before the output\'s final newline; {age} becomes its age (2h3m), {state} `stale` or `failing` [env: CACHEBACK_STALE_MARKER]' -r
complete -c cacheback -n "__fish_cacheback_using_subcommand warm; and not __fish_cacheback_in_command warm --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --name --env --modtime --hash --scope --placeholder" -l on-refresh -d 'After a background refresh stores output different from before, run CMD with `sh -c`, detached, with CACHEBACK_NAME and CACHEBACK_KEY set (e.g. \'pkill -RTMIN+8 i3blocks\')' -r
complete -c cacheback -n "__fish_cacheback_using_subcommand warm; and not __fish_cacheback_in_command warm --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --name --env --modtime --hash --scope --placeholder" -l name -d 'Human name for the entry, for `stats`, `show` and `invalidate` (not part of the key)' -r
complete -c cacheback -n "__fish_cacheback_using_subcommand warm; and not __fish_cacheback_in_command warm --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --name --env --modtime --hash --scope --placeholder" -l env -d 'Key on the value of environment variable NAME (repeatable; stored only as a hash)' -r
complete -c cacheback -n "__fish_cacheback_using_subcommand warm; and not __fish_cacheback_in_command warm --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --name --env --modtime --hash --scope --placeholder" -l modtime -d 'Key on the modification time of FILE (repeatable), so editing it starts a new entry' -r -F
complete -c cacheback -n "__fish_cacheback_using_subcommand warm; and not __fish_cacheback_in_command warm --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --name --env --modtime --hash --scope --placeholder" -l hash -d 'Key on the content of FILE (repeatable): unlike --modtime, a checkout that rewrites the file with the same bytes keeps the entry' -r -F
complete -c cacheback -n "__fish_cacheback_using_subcommand warm; and not __fish_cacheback_in_command warm --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --name --env --modtime --hash --scope --placeholder" -l scope -d 'Key on a namespace, to keep otherwise identical commands apart [env: CACHEBACK_SCOPE]' -r
complete -c cacheback -n "__fish_cacheback_using_subcommand warm; and not __fish_cacheback_in_command warm --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --name --env --modtime --hash --scope --placeholder" -l placeholder -d 'Text printed on a miss with --no-wait [default: nothing]' -r
complete -c cacheback -n "__fish_cacheback_using_subcommand warm; and not __fish_cacheback_in_command warm --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --name --env --modtime --hash --scope --placeholder" -l cache-failures -d 'Store results that exit non-zero too (by default only successes are stored)'
complete -c cacheback -n "__fish_cacheback_using_subcommand warm; and not __fish_cacheback_in_command warm --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --name --env --modtime --hash --scope --placeholder" -l cwd -d 'Key on the working directory: each directory gets its own entry'
complete -c cacheback -n "__fish_cacheback_using_subcommand warm; and not __fish_cacheback_in_command warm --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --name --env --modtime --hash --scope --placeholder" -l stdin -d 'Read stdin, key on its content, and give the same bytes to the command and its refreshes (without it the command\'s stdin is /dev/null)'
complete -c cacheback -n "__fish_cacheback_using_subcommand warm; and not __fish_cacheback_in_command warm --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --name --env --modtime --hash --scope --placeholder" -l no-wait -d 'On a miss, print the --placeholder at once and run the command in the background'
complete -c cacheback -n "__fish_cacheback_using_subcommand warm; and not __fish_cacheback_in_command warm --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --name --env --modtime --hash --scope --placeholder" -l force -d 'Run the command now, store and print its result, whatever the cache holds'
complete -c cacheback -n "__fish_cacheback_using_subcommand warm; and not __fish_cacheback_in_command warm --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --name --env --modtime --hash --scope --placeholder" -s h -l help -d 'Print help'
complete -c cacheback -n "__fish_cacheback_using_subcommand warm; and not __fish_cacheback_in_command warm --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --name --env --modtime --hash --scope --placeholder" -s V -l version -d 'Print version'
complete -c cacheback -n "__fish_cacheback_using_subcommand gc" -l cache-dir -d 'Cache directory [default: $CACHEBACK_DIR, else $XDG_CACHE_HOME/cacheback]' -r -f -a "(__fish_complete_directories)"
complete -c cacheback -n "__fish_cacheback_using_subcommand gc" -l older-than -d 'Remove entries not read for this long' -r
complete -c cacheback -n "__fish_cacheback_using_subcommand gc" -l max-size -d 'Then remove the least recently read entries until the cache fits this size (e.g. 100M)' -r
complete -c cacheback -n "__fish_cacheback_using_subcommand gc" -l dry-run -d 'Report what would be removed, remove nothing'
complete -c cacheback -n "__fish_cacheback_using_subcommand gc" -s h -l help -d 'Print help'
complete -c cacheback -n "__fish_cacheback_using_subcommand gc" -s V -l version -d 'Print version'
complete -c cacheback -n "__fish_cacheback_using_subcommand help; and not __fish_seen_subcommand_from run stats show invalidate warm gc help" -f -a "run" -d 'Print a command\'s cached output, refreshing it in the background when stale'
complete -c cacheback -n "__fish_cacheback_using_subcommand help; and not __fish_seen_subcommand_from run stats show invalidate warm gc help" -f -a "stats" -d 'List cached entries with their state, age, counters and last failure'
complete -c cacheback -n "__fish_cacheback_using_subcommand help; and not __fish_seen_subcommand_from run stats show invalidate warm gc help" -f -a "show" -d 'Show one entry\'s metadata, or with --stdout/--stderr its cached output'
complete -c cacheback -n "__fish_cacheback_using_subcommand help; and not __fish_seen_subcommand_from run stats show invalidate warm gc help" -f -a "invalidate" -d 'Remove entries so the next `run` is a miss, or with --refresh mark them stale and refresh'
complete -c cacheback -n "__fish_cacheback_using_subcommand help; and not __fish_seen_subcommand_from run stats show invalidate warm gc help" -f -a "warm" -d 'Start a background run now and return at once, to pre-fill the cache'
complete -c cacheback -n "__fish_cacheback_using_subcommand help; and not __fish_seen_subcommand_from run stats show invalidate warm gc help" -f -a "gc" -d 'Remove entries not read for a while, shrink the cache to a size, clean leftovers'
complete -c cacheback -n "__fish_cacheback_using_subcommand help; and not __fish_seen_subcommand_from run stats show invalidate warm gc help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cacheback -n "__fish_cacheback_in_command run --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --placeholder --name --env --modtime --hash --scope" -f -a "(__fish_cacheback_complete_command run --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --placeholder --name --env --modtime --hash --scope)"
complete -c cacheback -n "__fish_cacheback_in_command show --cache-dir --name --env --modtime --hash --scope" -f -a "(__fish_cacheback_complete_command show --cache-dir --name --env --modtime --hash --scope)"
complete -c cacheback -n "__fish_cacheback_in_command invalidate --cache-dir --name --env --modtime --hash --scope --jobs -j" -f -a "(__fish_cacheback_complete_command invalidate --cache-dir --name --env --modtime --hash --scope --jobs -j)"
complete -c cacheback -n "__fish_cacheback_in_command warm --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --name --env --modtime --hash --scope --placeholder" -f -a "(__fish_cacheback_complete_command warm --cache-dir --ttl --max-age --timeout --jitter --stale-marker --on-refresh --name --env --modtime --hash --scope --placeholder)"

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
