
use builtin;
use str;

set edit:completion:arg-completer[cacheback] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }

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
    var command = 'cacheback'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'cacheback'= {
            cand --cache-dir 'Cache directory [default: $CACHEBACK_DIR, else ~/.cache/cacheback]'
            cand --store 'Share values between hosts through this Redis server [env: CACHEBACK_STORE]: redis://[USER[:PASSWORD]@]HOST[:PORT][/DB], rediss://... (TLS) or unix:///PATH[?db=N]; the password can come from CACHEBACK_STORE_PASSWORD'
            cand --store-timeout 'How long to wait for the store to accept a connection before going on without it [env: CACHEBACK_STORE_TIMEOUT] [default: 200ms]'
            cand --store-ca-file 'Trust only the certificate authorities in this PEM file for rediss:// [env: CACHEBACK_STORE_CA_FILE] [default: the system''s]'
            cand --store-max-value 'Values larger than this stay in the local cache only, with a warning [env: CACHEBACK_STORE_MAX_VALUE] [default: 256MiB]'
            cand --store-prefix 'Prefix of the store''s keys, so teams can share a server (and an ACL can confine cacheback to `PREFIX:*`) [env: CACHEBACK_STORE_PREFIX] [default: cacheback]'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand run 'Print a command''s cached output, refreshing it in the background when stale'
            cand stats 'List cached entries with their state, age, counters and last failure'
            cand show 'Show one entry''s metadata, or with --stdout/--stderr its cached output'
            cand invalidate 'Remove entries, so the next `run` is a miss; --refresh marks them stale instead'
            cand warm 'Start a background run now and return at once, to pre-fill the cache'
            cand gc 'Remove entries not read for a while, shrink the cache to a size, clean leftovers'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cacheback;run'= {
            cand --cache-dir 'Cache directory [default: $CACHEBACK_DIR, else ~/.cache/cacheback]'
            cand --store 'Share values between hosts through this Redis server [env: CACHEBACK_STORE]: redis://[USER[:PASSWORD]@]HOST[:PORT][/DB], rediss://... (TLS) or unix:///PATH[?db=N]; the password can come from CACHEBACK_STORE_PASSWORD'
            cand --store-timeout 'How long to wait for the store to accept a connection before going on without it [env: CACHEBACK_STORE_TIMEOUT] [default: 200ms]'
            cand --store-ca-file 'Trust only the certificate authorities in this PEM file for rediss:// [env: CACHEBACK_STORE_CA_FILE] [default: the system''s]'
            cand --store-max-value 'Values larger than this stay in the local cache only, with a warning [env: CACHEBACK_STORE_MAX_VALUE] [default: 256MiB]'
            cand --store-prefix 'Prefix of the store''s keys, so teams can share a server (and an ACL can confine cacheback to `PREFIX:*`) [env: CACHEBACK_STORE_PREFIX] [default: cacheback]'
            cand --ttl 'Serve without refreshing while younger than this: 90s, 15m, 1h, 2days'
            cand --max-age 'Never serve an entry older than this: run the command (hard expiry)'
            cand --timeout 'Kill the command after this long (a failure, exit status 124)'
            cand --jitter 'Spread refreshes: go stale later by up to this (10%, 30s)'
            cand --stale-marker 'Print TEXT after a stale or failing value: '' ({age} old)'''
            cand --on-refresh 'Run CMD (sh -c) when a refresh changes what callers are shown'
            cand --placeholder 'Text printed on a miss with --no-wait [default: nothing]'
            cand --name 'A label for `stats`, `show` and `invalidate` (not part of the key)'
            cand --env 'Key on the value of environment variable NAME (repeatable)'
            cand --modtime 'Key on FILE''s modification time (repeatable)'
            cand --hash 'Key on FILE''s content (repeatable; regular files only)'
            cand --scope 'Key on a namespace [env: CACHEBACK_SCOPE]'
            cand --no-wait 'On a miss, print the --placeholder and run in the background'
            cand --force 'Run the command now, store and print its result, whatever is cached'
            cand --cache-failures 'Store results that exit non-zero too (by default only successes)'
            cand --cwd 'Key on the working directory: each directory gets its own entry'
            cand --stdin 'Key on stdin and give it to the command (else it gets /dev/null)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cacheback;stats'= {
            cand --cache-dir 'Cache directory [default: $CACHEBACK_DIR, else ~/.cache/cacheback]'
            cand --store 'Share values between hosts through this Redis server [env: CACHEBACK_STORE]: redis://[USER[:PASSWORD]@]HOST[:PORT][/DB], rediss://... (TLS) or unix:///PATH[?db=N]; the password can come from CACHEBACK_STORE_PASSWORD'
            cand --store-timeout 'How long to wait for the store to accept a connection before going on without it [env: CACHEBACK_STORE_TIMEOUT] [default: 200ms]'
            cand --store-ca-file 'Trust only the certificate authorities in this PEM file for rediss:// [env: CACHEBACK_STORE_CA_FILE] [default: the system''s]'
            cand --store-max-value 'Values larger than this stay in the local cache only, with a warning [env: CACHEBACK_STORE_MAX_VALUE] [default: 256MiB]'
            cand --store-prefix 'Prefix of the store''s keys, so teams can share a server (and an ACL can confine cacheback to `PREFIX:*`) [env: CACHEBACK_STORE_PREFIX] [default: cacheback]'
            cand --sort 'Order of the rows'
            cand --json 'Print one JSON document {"entries": [...], "totals": {...}} (schema in docs/reference.md)'
            cand --reverse 'Reverse the order'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cacheback;show'= {
            cand --cache-dir 'Cache directory [default: $CACHEBACK_DIR, else ~/.cache/cacheback]'
            cand --store 'Share values between hosts through this Redis server [env: CACHEBACK_STORE]: redis://[USER[:PASSWORD]@]HOST[:PORT][/DB], rediss://... (TLS) or unix:///PATH[?db=N]; the password can come from CACHEBACK_STORE_PASSWORD'
            cand --store-timeout 'How long to wait for the store to accept a connection before going on without it [env: CACHEBACK_STORE_TIMEOUT] [default: 200ms]'
            cand --store-ca-file 'Trust only the certificate authorities in this PEM file for rediss:// [env: CACHEBACK_STORE_CA_FILE] [default: the system''s]'
            cand --store-max-value 'Values larger than this stay in the local cache only, with a warning [env: CACHEBACK_STORE_MAX_VALUE] [default: 256MiB]'
            cand --store-prefix 'Prefix of the store''s keys, so teams can share a server (and an ACL can confine cacheback to `PREFIX:*`) [env: CACHEBACK_STORE_PREFIX] [default: cacheback]'
            cand --name 'The entries labelled LABEL with `run --name`'
            cand --env 'Key on the value of environment variable NAME (repeatable)'
            cand --modtime 'Key on FILE''s modification time (repeatable)'
            cand --hash 'Key on FILE''s content (repeatable; regular files only)'
            cand --scope 'Key on a namespace [env: CACHEBACK_SCOPE]'
            cand --cwd 'Key on the working directory: each directory gets its own entry'
            cand --stdin 'Key on stdin and give it to the command (else it gets /dev/null)'
            cand --stdout 'Print the cached stdout instead of the metadata'
            cand --stderr 'Print the cached stderr instead of the metadata (after stdout with --stdout)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cacheback;invalidate'= {
            cand --cache-dir 'Cache directory [default: $CACHEBACK_DIR, else ~/.cache/cacheback]'
            cand --store 'Share values between hosts through this Redis server [env: CACHEBACK_STORE]: redis://[USER[:PASSWORD]@]HOST[:PORT][/DB], rediss://... (TLS) or unix:///PATH[?db=N]; the password can come from CACHEBACK_STORE_PASSWORD'
            cand --store-timeout 'How long to wait for the store to accept a connection before going on without it [env: CACHEBACK_STORE_TIMEOUT] [default: 200ms]'
            cand --store-ca-file 'Trust only the certificate authorities in this PEM file for rediss:// [env: CACHEBACK_STORE_CA_FILE] [default: the system''s]'
            cand --store-max-value 'Values larger than this stay in the local cache only, with a warning [env: CACHEBACK_STORE_MAX_VALUE] [default: 256MiB]'
            cand --store-prefix 'Prefix of the store''s keys, so teams can share a server (and an ACL can confine cacheback to `PREFIX:*`) [env: CACHEBACK_STORE_PREFIX] [default: cacheback]'
            cand --name 'The entries labelled LABEL with `run --name`'
            cand --env 'Key on the value of environment variable NAME (repeatable)'
            cand --modtime 'Key on FILE''s modification time (repeatable)'
            cand --hash 'Key on FILE''s content (repeatable; regular files only)'
            cand --scope 'Key on a namespace [env: CACHEBACK_SCOPE]'
            cand -j 'With --refresh: how many refreshes run at once (the rest wait their turn)'
            cand --jobs 'With --refresh: how many refreshes run at once (the rest wait their turn)'
            cand --cwd 'Key on the working directory: each directory gets its own entry'
            cand --stdin 'Key on stdin and give it to the command (else it gets /dev/null)'
            cand --all 'Every entry in the cache'
            cand --refresh 'Keep serving the entry, marked stale, and start a background refresh now'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cacheback;warm'= {
            cand --cache-dir 'Cache directory [default: $CACHEBACK_DIR, else ~/.cache/cacheback]'
            cand --store 'Share values between hosts through this Redis server [env: CACHEBACK_STORE]: redis://[USER[:PASSWORD]@]HOST[:PORT][/DB], rediss://... (TLS) or unix:///PATH[?db=N]; the password can come from CACHEBACK_STORE_PASSWORD'
            cand --store-timeout 'How long to wait for the store to accept a connection before going on without it [env: CACHEBACK_STORE_TIMEOUT] [default: 200ms]'
            cand --store-ca-file 'Trust only the certificate authorities in this PEM file for rediss:// [env: CACHEBACK_STORE_CA_FILE] [default: the system''s]'
            cand --store-max-value 'Values larger than this stay in the local cache only, with a warning [env: CACHEBACK_STORE_MAX_VALUE] [default: 256MiB]'
            cand --store-prefix 'Prefix of the store''s keys, so teams can share a server (and an ACL can confine cacheback to `PREFIX:*`) [env: CACHEBACK_STORE_PREFIX] [default: cacheback]'
            cand --ttl 'Serve without refreshing while younger than this: 90s, 15m, 1h, 2days'
            cand --max-age 'Never serve an entry older than this: run the command (hard expiry)'
            cand --timeout 'Kill the command after this long (a failure, exit status 124)'
            cand --jitter 'Spread refreshes: go stale later by up to this (10%, 30s)'
            cand --stale-marker 'Print TEXT after a stale or failing value: '' ({age} old)'''
            cand --on-refresh 'Run CMD (sh -c) when a refresh changes what callers are shown'
            cand --name 'A label for `stats`, `show` and `invalidate` (not part of the key)'
            cand --env 'Key on the value of environment variable NAME (repeatable)'
            cand --modtime 'Key on FILE''s modification time (repeatable)'
            cand --hash 'Key on FILE''s content (repeatable; regular files only)'
            cand --scope 'Key on a namespace [env: CACHEBACK_SCOPE]'
            cand --placeholder 'Text printed on a miss with --no-wait [default: nothing]'
            cand --cache-failures 'Store results that exit non-zero too (by default only successes)'
            cand --cwd 'Key on the working directory: each directory gets its own entry'
            cand --stdin 'Key on stdin and give it to the command (else it gets /dev/null)'
            cand --no-wait 'On a miss, print the --placeholder and run in the background'
            cand --force 'Run the command now, store and print its result, whatever is cached'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cacheback;gc'= {
            cand --cache-dir 'Cache directory [default: $CACHEBACK_DIR, else ~/.cache/cacheback]'
            cand --store 'Share values between hosts through this Redis server [env: CACHEBACK_STORE]: redis://[USER[:PASSWORD]@]HOST[:PORT][/DB], rediss://... (TLS) or unix:///PATH[?db=N]; the password can come from CACHEBACK_STORE_PASSWORD'
            cand --store-timeout 'How long to wait for the store to accept a connection before going on without it [env: CACHEBACK_STORE_TIMEOUT] [default: 200ms]'
            cand --store-ca-file 'Trust only the certificate authorities in this PEM file for rediss:// [env: CACHEBACK_STORE_CA_FILE] [default: the system''s]'
            cand --store-max-value 'Values larger than this stay in the local cache only, with a warning [env: CACHEBACK_STORE_MAX_VALUE] [default: 256MiB]'
            cand --store-prefix 'Prefix of the store''s keys, so teams can share a server (and an ACL can confine cacheback to `PREFIX:*`) [env: CACHEBACK_STORE_PREFIX] [default: cacheback]'
            cand --older-than 'Remove entries not read for this long'
            cand --max-size 'Then remove the least recently read entries until the cache fits this size (e.g. 100M)'
            cand --dry-run 'Report what would be removed, remove nothing'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cacheback;help'= {
            cand run 'Print a command''s cached output, refreshing it in the background when stale'
            cand stats 'List cached entries with their state, age, counters and last failure'
            cand show 'Show one entry''s metadata, or with --stdout/--stderr its cached output'
            cand invalidate 'Remove entries, so the next `run` is a miss; --refresh marks them stale instead'
            cand warm 'Start a background run now and return at once, to pre-fill the cache'
            cand gc 'Remove entries not read for a while, shrink the cache to a size, clean leftovers'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cacheback;help;run'= {
        }
        &'cacheback;help;stats'= {
        }
        &'cacheback;help;show'= {
        }
        &'cacheback;help;invalidate'= {
        }
        &'cacheback;help;warm'= {
        }
        &'cacheback;help;gc'= {
        }
        &'cacheback;help;help'= {
        }
    ]
    var start = (command-start $words ['--cache-dir' '--store' '--store-timeout' '--store-ca-file' '--store-max-value' '--store-prefix'] [&'run'=['--cache-dir' '--store' '--store-timeout' '--store-ca-file' '--store-max-value' '--store-prefix' '--ttl' '--max-age' '--timeout' '--jitter' '--stale-marker' '--on-refresh' '--placeholder' '--name' '--env' '--modtime' '--hash' '--scope'] &'show'=['--cache-dir' '--store' '--store-timeout' '--store-ca-file' '--store-max-value' '--store-prefix' '--name' '--env' '--modtime' '--hash' '--scope'] &'invalidate'=['--cache-dir' '--store' '--store-timeout' '--store-ca-file' '--store-max-value' '--store-prefix' '--name' '--env' '--modtime' '--hash' '--scope' '--jobs' '-j'] &'warm'=['--cache-dir' '--store' '--store-timeout' '--store-ca-file' '--store-max-value' '--store-prefix' '--ttl' '--max-age' '--timeout' '--jitter' '--stale-marker' '--on-refresh' '--name' '--env' '--modtime' '--hash' '--scope' '--placeholder']])
    if (>= $start 0) {
        edit:complete-sudo cacheback (all $words[$start..])
    } else {
        $completions[$command]
    }
}
