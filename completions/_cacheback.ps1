
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'cacheback' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'cacheback'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'cacheback' {
            [CompletionResult]::new('--cache-dir', '--cache-dir', [CompletionResultType]::ParameterName, 'Cache directory [default: $CACHEBACK_DIR, else ~/.cache/cacheback]')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Share values between hosts through this Redis server [env: CACHEBACK_STORE]: redis://[USER[:PASSWORD]@]HOST[:PORT][/DB], rediss://... (TLS) or unix:///PATH[?db=N]; the password can come from CACHEBACK_STORE_PASSWORD')
            [CompletionResult]::new('--store-timeout', '--store-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the store to accept a connection before going on without it [env: CACHEBACK_STORE_TIMEOUT] [default: 200ms]')
            [CompletionResult]::new('--store-ca-file', '--store-ca-file', [CompletionResultType]::ParameterName, 'Trust only the certificate authorities in this PEM file for rediss:// [env: CACHEBACK_STORE_CA_FILE] [default: the system''s]')
            [CompletionResult]::new('--store-max-value', '--store-max-value', [CompletionResultType]::ParameterName, 'Values larger than this stay in the local cache only, with a warning [env: CACHEBACK_STORE_MAX_VALUE] [default: 256MiB]')
            [CompletionResult]::new('--store-prefix', '--store-prefix', [CompletionResultType]::ParameterName, 'Prefix of the store''s keys, so teams can share a server (and an ACL can confine cacheback to `PREFIX:*`) [env: CACHEBACK_STORE_PREFIX] [default: cacheback]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('run', 'run', [CompletionResultType]::ParameterValue, 'Print a command''s cached output, refreshing it in the background when stale')
            [CompletionResult]::new('stats', 'stats', [CompletionResultType]::ParameterValue, 'List cached entries with their state, age, counters and last failure')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one entry''s metadata, or with --stdout/--stderr its cached output')
            [CompletionResult]::new('invalidate', 'invalidate', [CompletionResultType]::ParameterValue, 'Remove entries, so the next `run` is a miss; --refresh marks them stale instead')
            [CompletionResult]::new('warm', 'warm', [CompletionResultType]::ParameterValue, 'Start a background run now and return at once, to pre-fill the cache')
            [CompletionResult]::new('gc', 'gc', [CompletionResultType]::ParameterValue, 'Remove entries not read for a while, shrink the cache to a size, clean leftovers')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cacheback;run' {
            [CompletionResult]::new('--cache-dir', '--cache-dir', [CompletionResultType]::ParameterName, 'Cache directory [default: $CACHEBACK_DIR, else ~/.cache/cacheback]')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Share values between hosts through this Redis server [env: CACHEBACK_STORE]: redis://[USER[:PASSWORD]@]HOST[:PORT][/DB], rediss://... (TLS) or unix:///PATH[?db=N]; the password can come from CACHEBACK_STORE_PASSWORD')
            [CompletionResult]::new('--store-timeout', '--store-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the store to accept a connection before going on without it [env: CACHEBACK_STORE_TIMEOUT] [default: 200ms]')
            [CompletionResult]::new('--store-ca-file', '--store-ca-file', [CompletionResultType]::ParameterName, 'Trust only the certificate authorities in this PEM file for rediss:// [env: CACHEBACK_STORE_CA_FILE] [default: the system''s]')
            [CompletionResult]::new('--store-max-value', '--store-max-value', [CompletionResultType]::ParameterName, 'Values larger than this stay in the local cache only, with a warning [env: CACHEBACK_STORE_MAX_VALUE] [default: 256MiB]')
            [CompletionResult]::new('--store-prefix', '--store-prefix', [CompletionResultType]::ParameterName, 'Prefix of the store''s keys, so teams can share a server (and an ACL can confine cacheback to `PREFIX:*`) [env: CACHEBACK_STORE_PREFIX] [default: cacheback]')
            [CompletionResult]::new('--ttl', '--ttl', [CompletionResultType]::ParameterName, 'Serve without refreshing while younger than this: 90s, 15m, 1h, 2days')
            [CompletionResult]::new('--max-age', '--max-age', [CompletionResultType]::ParameterName, 'Never serve an entry older than this: run the command (hard expiry)')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Kill the command after this long (a failure, exit status 124)')
            [CompletionResult]::new('--jitter', '--jitter', [CompletionResultType]::ParameterName, 'Spread refreshes: go stale later by up to this (10%, 30s)')
            [CompletionResult]::new('--stale-marker', '--stale-marker', [CompletionResultType]::ParameterName, 'Print TEXT after a stale or failing value: '' ({age} old)''')
            [CompletionResult]::new('--on-refresh', '--on-refresh', [CompletionResultType]::ParameterName, 'Run CMD (sh -c) when a refresh changes what callers are shown')
            [CompletionResult]::new('--placeholder', '--placeholder', [CompletionResultType]::ParameterName, 'Text printed on a miss with --no-wait [default: nothing]')
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'A label for `stats`, `show` and `invalidate` (not part of the key)')
            [CompletionResult]::new('--env', '--env', [CompletionResultType]::ParameterName, 'Key on the value of environment variable NAME (repeatable)')
            [CompletionResult]::new('--modtime', '--modtime', [CompletionResultType]::ParameterName, 'Key on FILE''s modification time (repeatable)')
            [CompletionResult]::new('--hash', '--hash', [CompletionResultType]::ParameterName, 'Key on FILE''s content (repeatable; regular files only)')
            [CompletionResult]::new('--scope', '--scope', [CompletionResultType]::ParameterName, 'Key on a namespace [env: CACHEBACK_SCOPE]')
            [CompletionResult]::new('--no-wait', '--no-wait', [CompletionResultType]::ParameterName, 'On a miss, print the --placeholder and run in the background')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Run the command now, store and print its result, whatever is cached')
            [CompletionResult]::new('--cache-failures', '--cache-failures', [CompletionResultType]::ParameterName, 'Store results that exit non-zero too (by default only successes)')
            [CompletionResult]::new('--cwd', '--cwd', [CompletionResultType]::ParameterName, 'Key on the working directory: each directory gets its own entry')
            [CompletionResult]::new('--stdin', '--stdin', [CompletionResultType]::ParameterName, 'Key on stdin and give it to the command (else it gets /dev/null)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cacheback;stats' {
            [CompletionResult]::new('--cache-dir', '--cache-dir', [CompletionResultType]::ParameterName, 'Cache directory [default: $CACHEBACK_DIR, else ~/.cache/cacheback]')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Share values between hosts through this Redis server [env: CACHEBACK_STORE]: redis://[USER[:PASSWORD]@]HOST[:PORT][/DB], rediss://... (TLS) or unix:///PATH[?db=N]; the password can come from CACHEBACK_STORE_PASSWORD')
            [CompletionResult]::new('--store-timeout', '--store-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the store to accept a connection before going on without it [env: CACHEBACK_STORE_TIMEOUT] [default: 200ms]')
            [CompletionResult]::new('--store-ca-file', '--store-ca-file', [CompletionResultType]::ParameterName, 'Trust only the certificate authorities in this PEM file for rediss:// [env: CACHEBACK_STORE_CA_FILE] [default: the system''s]')
            [CompletionResult]::new('--store-max-value', '--store-max-value', [CompletionResultType]::ParameterName, 'Values larger than this stay in the local cache only, with a warning [env: CACHEBACK_STORE_MAX_VALUE] [default: 256MiB]')
            [CompletionResult]::new('--store-prefix', '--store-prefix', [CompletionResultType]::ParameterName, 'Prefix of the store''s keys, so teams can share a server (and an ACL can confine cacheback to `PREFIX:*`) [env: CACHEBACK_STORE_PREFIX] [default: cacheback]')
            [CompletionResult]::new('--sort', '--sort', [CompletionResultType]::ParameterName, 'Order of the rows')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document {"entries": [...], "totals": {...}} (schema in docs/reference.md)')
            [CompletionResult]::new('--reverse', '--reverse', [CompletionResultType]::ParameterName, 'Reverse the order')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cacheback;show' {
            [CompletionResult]::new('--cache-dir', '--cache-dir', [CompletionResultType]::ParameterName, 'Cache directory [default: $CACHEBACK_DIR, else ~/.cache/cacheback]')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Share values between hosts through this Redis server [env: CACHEBACK_STORE]: redis://[USER[:PASSWORD]@]HOST[:PORT][/DB], rediss://... (TLS) or unix:///PATH[?db=N]; the password can come from CACHEBACK_STORE_PASSWORD')
            [CompletionResult]::new('--store-timeout', '--store-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the store to accept a connection before going on without it [env: CACHEBACK_STORE_TIMEOUT] [default: 200ms]')
            [CompletionResult]::new('--store-ca-file', '--store-ca-file', [CompletionResultType]::ParameterName, 'Trust only the certificate authorities in this PEM file for rediss:// [env: CACHEBACK_STORE_CA_FILE] [default: the system''s]')
            [CompletionResult]::new('--store-max-value', '--store-max-value', [CompletionResultType]::ParameterName, 'Values larger than this stay in the local cache only, with a warning [env: CACHEBACK_STORE_MAX_VALUE] [default: 256MiB]')
            [CompletionResult]::new('--store-prefix', '--store-prefix', [CompletionResultType]::ParameterName, 'Prefix of the store''s keys, so teams can share a server (and an ACL can confine cacheback to `PREFIX:*`) [env: CACHEBACK_STORE_PREFIX] [default: cacheback]')
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'The entries labelled LABEL with `run --name`')
            [CompletionResult]::new('--env', '--env', [CompletionResultType]::ParameterName, 'Key on the value of environment variable NAME (repeatable)')
            [CompletionResult]::new('--modtime', '--modtime', [CompletionResultType]::ParameterName, 'Key on FILE''s modification time (repeatable)')
            [CompletionResult]::new('--hash', '--hash', [CompletionResultType]::ParameterName, 'Key on FILE''s content (repeatable; regular files only)')
            [CompletionResult]::new('--scope', '--scope', [CompletionResultType]::ParameterName, 'Key on a namespace [env: CACHEBACK_SCOPE]')
            [CompletionResult]::new('--cwd', '--cwd', [CompletionResultType]::ParameterName, 'Key on the working directory: each directory gets its own entry')
            [CompletionResult]::new('--stdin', '--stdin', [CompletionResultType]::ParameterName, 'Key on stdin and give it to the command (else it gets /dev/null)')
            [CompletionResult]::new('--stdout', '--stdout', [CompletionResultType]::ParameterName, 'Print the cached stdout instead of the metadata')
            [CompletionResult]::new('--stderr', '--stderr', [CompletionResultType]::ParameterName, 'Print the cached stderr instead of the metadata (after stdout with --stdout)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cacheback;invalidate' {
            [CompletionResult]::new('--cache-dir', '--cache-dir', [CompletionResultType]::ParameterName, 'Cache directory [default: $CACHEBACK_DIR, else ~/.cache/cacheback]')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Share values between hosts through this Redis server [env: CACHEBACK_STORE]: redis://[USER[:PASSWORD]@]HOST[:PORT][/DB], rediss://... (TLS) or unix:///PATH[?db=N]; the password can come from CACHEBACK_STORE_PASSWORD')
            [CompletionResult]::new('--store-timeout', '--store-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the store to accept a connection before going on without it [env: CACHEBACK_STORE_TIMEOUT] [default: 200ms]')
            [CompletionResult]::new('--store-ca-file', '--store-ca-file', [CompletionResultType]::ParameterName, 'Trust only the certificate authorities in this PEM file for rediss:// [env: CACHEBACK_STORE_CA_FILE] [default: the system''s]')
            [CompletionResult]::new('--store-max-value', '--store-max-value', [CompletionResultType]::ParameterName, 'Values larger than this stay in the local cache only, with a warning [env: CACHEBACK_STORE_MAX_VALUE] [default: 256MiB]')
            [CompletionResult]::new('--store-prefix', '--store-prefix', [CompletionResultType]::ParameterName, 'Prefix of the store''s keys, so teams can share a server (and an ACL can confine cacheback to `PREFIX:*`) [env: CACHEBACK_STORE_PREFIX] [default: cacheback]')
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'The entries labelled LABEL with `run --name`')
            [CompletionResult]::new('--env', '--env', [CompletionResultType]::ParameterName, 'Key on the value of environment variable NAME (repeatable)')
            [CompletionResult]::new('--modtime', '--modtime', [CompletionResultType]::ParameterName, 'Key on FILE''s modification time (repeatable)')
            [CompletionResult]::new('--hash', '--hash', [CompletionResultType]::ParameterName, 'Key on FILE''s content (repeatable; regular files only)')
            [CompletionResult]::new('--scope', '--scope', [CompletionResultType]::ParameterName, 'Key on a namespace [env: CACHEBACK_SCOPE]')
            [CompletionResult]::new('-j', '-j', [CompletionResultType]::ParameterName, 'With --refresh: how many refreshes run at once (the rest wait their turn)')
            [CompletionResult]::new('--jobs', '--jobs', [CompletionResultType]::ParameterName, 'With --refresh: how many refreshes run at once (the rest wait their turn)')
            [CompletionResult]::new('--cwd', '--cwd', [CompletionResultType]::ParameterName, 'Key on the working directory: each directory gets its own entry')
            [CompletionResult]::new('--stdin', '--stdin', [CompletionResultType]::ParameterName, 'Key on stdin and give it to the command (else it gets /dev/null)')
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Every entry in the cache')
            [CompletionResult]::new('--refresh', '--refresh', [CompletionResultType]::ParameterName, 'Keep serving the entry, marked stale, and start a background refresh now')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cacheback;warm' {
            [CompletionResult]::new('--cache-dir', '--cache-dir', [CompletionResultType]::ParameterName, 'Cache directory [default: $CACHEBACK_DIR, else ~/.cache/cacheback]')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Share values between hosts through this Redis server [env: CACHEBACK_STORE]: redis://[USER[:PASSWORD]@]HOST[:PORT][/DB], rediss://... (TLS) or unix:///PATH[?db=N]; the password can come from CACHEBACK_STORE_PASSWORD')
            [CompletionResult]::new('--store-timeout', '--store-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the store to accept a connection before going on without it [env: CACHEBACK_STORE_TIMEOUT] [default: 200ms]')
            [CompletionResult]::new('--store-ca-file', '--store-ca-file', [CompletionResultType]::ParameterName, 'Trust only the certificate authorities in this PEM file for rediss:// [env: CACHEBACK_STORE_CA_FILE] [default: the system''s]')
            [CompletionResult]::new('--store-max-value', '--store-max-value', [CompletionResultType]::ParameterName, 'Values larger than this stay in the local cache only, with a warning [env: CACHEBACK_STORE_MAX_VALUE] [default: 256MiB]')
            [CompletionResult]::new('--store-prefix', '--store-prefix', [CompletionResultType]::ParameterName, 'Prefix of the store''s keys, so teams can share a server (and an ACL can confine cacheback to `PREFIX:*`) [env: CACHEBACK_STORE_PREFIX] [default: cacheback]')
            [CompletionResult]::new('--ttl', '--ttl', [CompletionResultType]::ParameterName, 'Serve without refreshing while younger than this: 90s, 15m, 1h, 2days')
            [CompletionResult]::new('--max-age', '--max-age', [CompletionResultType]::ParameterName, 'Never serve an entry older than this: run the command (hard expiry)')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Kill the command after this long (a failure, exit status 124)')
            [CompletionResult]::new('--jitter', '--jitter', [CompletionResultType]::ParameterName, 'Spread refreshes: go stale later by up to this (10%, 30s)')
            [CompletionResult]::new('--stale-marker', '--stale-marker', [CompletionResultType]::ParameterName, 'Print TEXT after a stale or failing value: '' ({age} old)''')
            [CompletionResult]::new('--on-refresh', '--on-refresh', [CompletionResultType]::ParameterName, 'Run CMD (sh -c) when a refresh changes what callers are shown')
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'A label for `stats`, `show` and `invalidate` (not part of the key)')
            [CompletionResult]::new('--env', '--env', [CompletionResultType]::ParameterName, 'Key on the value of environment variable NAME (repeatable)')
            [CompletionResult]::new('--modtime', '--modtime', [CompletionResultType]::ParameterName, 'Key on FILE''s modification time (repeatable)')
            [CompletionResult]::new('--hash', '--hash', [CompletionResultType]::ParameterName, 'Key on FILE''s content (repeatable; regular files only)')
            [CompletionResult]::new('--scope', '--scope', [CompletionResultType]::ParameterName, 'Key on a namespace [env: CACHEBACK_SCOPE]')
            [CompletionResult]::new('--placeholder', '--placeholder', [CompletionResultType]::ParameterName, 'Text printed on a miss with --no-wait [default: nothing]')
            [CompletionResult]::new('--cache-failures', '--cache-failures', [CompletionResultType]::ParameterName, 'Store results that exit non-zero too (by default only successes)')
            [CompletionResult]::new('--cwd', '--cwd', [CompletionResultType]::ParameterName, 'Key on the working directory: each directory gets its own entry')
            [CompletionResult]::new('--stdin', '--stdin', [CompletionResultType]::ParameterName, 'Key on stdin and give it to the command (else it gets /dev/null)')
            [CompletionResult]::new('--no-wait', '--no-wait', [CompletionResultType]::ParameterName, 'On a miss, print the --placeholder and run in the background')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Run the command now, store and print its result, whatever is cached')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cacheback;gc' {
            [CompletionResult]::new('--cache-dir', '--cache-dir', [CompletionResultType]::ParameterName, 'Cache directory [default: $CACHEBACK_DIR, else ~/.cache/cacheback]')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Share values between hosts through this Redis server [env: CACHEBACK_STORE]: redis://[USER[:PASSWORD]@]HOST[:PORT][/DB], rediss://... (TLS) or unix:///PATH[?db=N]; the password can come from CACHEBACK_STORE_PASSWORD')
            [CompletionResult]::new('--store-timeout', '--store-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the store to accept a connection before going on without it [env: CACHEBACK_STORE_TIMEOUT] [default: 200ms]')
            [CompletionResult]::new('--store-ca-file', '--store-ca-file', [CompletionResultType]::ParameterName, 'Trust only the certificate authorities in this PEM file for rediss:// [env: CACHEBACK_STORE_CA_FILE] [default: the system''s]')
            [CompletionResult]::new('--store-max-value', '--store-max-value', [CompletionResultType]::ParameterName, 'Values larger than this stay in the local cache only, with a warning [env: CACHEBACK_STORE_MAX_VALUE] [default: 256MiB]')
            [CompletionResult]::new('--store-prefix', '--store-prefix', [CompletionResultType]::ParameterName, 'Prefix of the store''s keys, so teams can share a server (and an ACL can confine cacheback to `PREFIX:*`) [env: CACHEBACK_STORE_PREFIX] [default: cacheback]')
            [CompletionResult]::new('--older-than', '--older-than', [CompletionResultType]::ParameterName, 'Remove entries not read for this long')
            [CompletionResult]::new('--max-size', '--max-size', [CompletionResultType]::ParameterName, 'Then remove the least recently read entries until the cache fits this size (e.g. 100M)')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Report what would be removed, remove nothing')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cacheback;help' {
            [CompletionResult]::new('run', 'run', [CompletionResultType]::ParameterValue, 'Print a command''s cached output, refreshing it in the background when stale')
            [CompletionResult]::new('stats', 'stats', [CompletionResultType]::ParameterValue, 'List cached entries with their state, age, counters and last failure')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one entry''s metadata, or with --stdout/--stderr its cached output')
            [CompletionResult]::new('invalidate', 'invalidate', [CompletionResultType]::ParameterValue, 'Remove entries, so the next `run` is a miss; --refresh marks them stale instead')
            [CompletionResult]::new('warm', 'warm', [CompletionResultType]::ParameterValue, 'Start a background run now and return at once, to pre-fill the cache')
            [CompletionResult]::new('gc', 'gc', [CompletionResultType]::ParameterValue, 'Remove entries not read for a while, shrink the cache to a size, clean leftovers')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cacheback;help;run' {
            break
        }
        'cacheback;help;stats' {
            break
        }
        'cacheback;help;show' {
            break
        }
        'cacheback;help;invalidate' {
            break
        }
        'cacheback;help;warm' {
            break
        }
        'cacheback;help;gc' {
            break
        }
        'cacheback;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
