"""Resource ids ("api:external:api.example.com") and their detection from a command line.

A resource id names what a rate limit protects, as `type:category:target`. When the user
gives none, the command tells: curl/wget/httpie talk to an HTTP host, psql/mysql/mongosh to a
database, ssh/scp/rsync to a network host; anything else is named after the program. Our own
tools wrapping a command (`rpr ... -- patience ... -- curl URL`) are seen through.

Command lines are read the way each program reads them: which options take a value (`-H X`,
`-o file`, `--max-time 5`, `-ofile`, `--url=U`) decides which words are operands. Hand-written
rather than with `re` or `urllib.parse`, which cost milliseconds of start-up.
"""

from __future__ import annotations

__all__ = ["MAX_LENGTH", "command_resource", "detect_resource", "validate_resource_id"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

MAX_LENGTH = 256
_WRAPPERS = frozenset({"rpr", "patience"})
_OPERAND = ""  # a kept option whose value counts as an operand (curl's --url)


class _Syntax:
    """How one program's options read: which take a value, and which values we keep."""

    __slots__ = ("keep", "long", "optional", "short")

    def __init__(self, short: str, long: str, keep: dict[str, str], optional: str = "") -> None:
        self.keep = keep  # spelling ("-d", "--dbname") -> what the value is ("db")
        self.short = frozenset(short) | {k[1] for k in keep if len(k) == 2}
        self.long = frozenset(long.split()) | {k for k in keep if k.startswith("--")}
        self.optional = frozenset(optional)  # short options whose value can only be attached


_CURL = _Syntax(
    "AbcCdDeEFHKmoPQrtTuUwxXyYz",
    "--header --output --data --data-raw --data-binary --data-urlencode --data-ascii --json"
    " --request --user --user-agent --referer --cookie --cookie-jar --max-time"
    " --connect-timeout --write-out --form --form-string --upload-file --proxy --proxy-user"
    " --retry --retry-delay --retry-max-time --range --cert --cert-type --key --key-type --pass"
    " --cacert --capath --config --resolve --connect-to --speed-limit --speed-time --limit-rate"
    " --time-cond --dump-header --interface --local-port --ftp-port --quote --max-filesize"
    " --max-redirs --oauth2-bearer --continue-at --noproxy --unix-socket --abstract-unix-socket"
    " --aws-sigv4 --variable --trace --trace-ascii --stderr --ciphers --tls-max --proto"
    " --proto-redir --proto-default --dns-servers --doh-url --preproxy --proxy-header"
    " --telnet-option --expect100-timeout --happy-eyeballs-timeout-ms --output-dir --netrc-file"
    " --hostpubmd5 --hostpubsha256 --pinnedpubkey --request-target --retry-all-errors-count",
    {"--url": _OPERAND},
)
_WGET = _Syntax(
    "OoaeitTwPUBlQARDXI",
    "--output-document --output-file --append-output --execute --input-file --tries --timeout"
    " --wait --waitretry --directory-prefix --user-agent --header --post-data --post-file"
    " --body-data --body-file --method --user --password --http-user --http-password --level"
    " --quota --base --limit-rate --domains --exclude-domains --accept --reject"
    " --include-directories --exclude-directories --load-cookies --save-cookies --referer"
    " --ca-certificate --ca-directory --certificate --private-key --dns-timeout"
    " --connect-timeout --read-timeout --bind-address --progress --config --proxy-user"
    " --proxy-password --default-page --cut-dirs --restrict-file-names --local-encoding"
    " --remote-encoding --max-redirect",
    {},
)
_HTTPIE = _Syntax(
    "aAopPs",
    "--auth --auth-type --output --print --history-print --style --session --session-read-only"
    " --timeout --verify --cert --cert-key --cert-key-pass --proxy --max-redirects --pretty"
    " --format-options --ssl --ciphers --boundary --default-scheme --response-charset"
    " --response-mime --max-headers",
    {},
)
_PSQL = _Syntax(
    "cfFLoPRTUv",
    "--command --file --field-separator --log-file --output --pset --record-separator"
    " --table-attr --username --set --variable",
    {"-d": "db", "--dbname": "db", "-h": "host", "--host": "host", "-p": "port", "--port": "port"},
)
_MYSQL = _Syntax(
    "euS",
    "--execute --user --socket --default-character-set --init-command --protocol --ssl-ca"
    " --ssl-cert --ssl-key --ssl-mode --tee --defaults-file --defaults-extra-file --login-path"
    " --connect-timeout --bind-address",
    {
        "-D": "db",
        "--database": "db",
        "-h": "host",
        "--host": "host",
        "-P": "port",
        "--port": "port",
    },
    optional="p",  # -pSECRET; a bare -p prompts and never takes the next word
)
_MONGO = _Syntax(
    "upf",
    "--username --password --authenticationDatabase --authenticationMechanism --eval --file"
    " --tlsCertificateKeyFile --tlsCertificateKeyFilePassword --tlsCAFile --tlsCRLFile"
    " --apiVersion --awsAccessKeyId --awsSecretAccessKey --awsSessionToken --keyVaultNamespace"
    " --gssapiServiceName --sspiHostnameCanonicalization --retryWrites",
    {"--host": "host", "--port": "port"},
)
_SSH = _Syntax("bcDEeFIiJLlmOQRSWw", "", {"-p": "port", "-o": "option"})
_SCP = _Syntax("cDFiJlSX", "", {"-P": "port", "-o": "option"})
_RSYNC = _Syntax(
    "fTBM@",
    "--rsync-path --exclude --include --exclude-from --include-from --files-from --filter"
    " --log-file --log-file-format --partial-dir --temp-dir --compare-dest --copy-dest"
    " --link-dest --backup-dir --suffix --chmod --chown --usermap --groupmap --timeout"
    " --contimeout --bwlimit --max-size --min-size --max-delete --max-alloc --modify-window"
    " --password-file --out-format --info --debug --block-size --compress-level"
    " --compress-choice --checksum-choice --iconv --sockopts --address --outbuf"
    " --remote-option --stop-after --stop-at --write-batch --read-batch --only-write-batch"
    " --protocol --checksum-seed --skip-compress",
    {"-e": "rsh", "--rsh": "rsh", "--port": "port"},
)

_HTTP_TOOLS = {"curl": _CURL, "wget": _WGET, "http": _HTTPIE, "https": _HTTPIE}
_DATABASES = {
    "psql": ("postgres", _PSQL),
    "mysql": ("mysql", _MYSQL),
    "mongo": ("mongodb", _MONGO),
    "mongosh": ("mongodb", _MONGO),
}
_NETWORK = {"ssh": _SSH, "scp": _SCP, "rsync": _RSYNC}


def detect_resource(argv: Sequence[str]) -> str:
    """The resource a command uses, e.g. `api:external:api.example.com` for a curl of it."""
    argv = _unwrap(argv)
    program = argv[0].rsplit("/", 1)[-1]
    args = argv[1:]
    found = ""
    if program in _HTTP_TOOLS:
        host = _http_host(program, args)
        found = host and f"api:external:{host}"
    elif program in _DATABASES:
        engine, syntax = _DATABASES[program]
        found = f"database:{engine}:{_database(program, args, syntax)}"
    elif program in _NETWORK:
        address = _network_address(program, args)
        found = address and f"network:tcp:{address}"
    return _clean(found) if found else command_resource(program)


def command_resource(program: str) -> str:
    """The generic id of a command, from its program name alone: `command:local:NAME`."""
    return _clean(f"command:local:{program.rsplit('/', 1)[-1]}")


def validate_resource_id(text: str) -> str:
    """Return `text` if it can name a resource, else raise ValueError saying what is wrong."""
    if not text:
        raise ValueError("resource id is empty (give one like api:external:example.com)")
    if len(text) > MAX_LENGTH:
        raise ValueError(f"resource id is {len(text)} characters long (at most {MAX_LENGTH})")
    for char in text:
        if char.isspace():
            raise ValueError(f"resource id {text!r} contains whitespace (use - or _ instead)")
        if not char.isprintable():
            raise ValueError(f"resource id {text!r} contains a non-printable character")
    return text


def _unwrap(argv: Sequence[str]) -> Sequence[str]:
    """The command under `rpr ... --` and `patience ... --`, however deeply nested."""
    while argv and argv[0].rsplit("/", 1)[-1] in _WRAPPERS and "--" in argv:
        argv = argv[list(argv).index("--") + 1 :]
    if not argv or not argv[0]:
        raise ValueError("no command to detect a resource from (give --resource-id)")
    return argv


def _read(args: Sequence[str], syntax: _Syntax) -> tuple[dict[str, list[str]], list[str]]:
    """The kept option values (each in order) and the operands of a command line, in order."""
    values: dict[str, list[str]] = {}
    operands: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        spelling = value = ""
        if arg == "--":
            operands.extend(args[i:])
            break
        if arg.startswith("--"):
            spelling, equals, value = arg.partition("=")
            if not equals:
                if spelling not in syntax.long or i == len(args):
                    continue
                value = args[i]
                i += 1
        elif arg.startswith("-") and len(arg) > 1:
            for j in range(1, len(arg)):
                letter = arg[j]
                if letter in syntax.short or letter in syntax.optional:
                    spelling, value = "-" + letter, arg[j + 1 :]
                    if not value and letter in syntax.short and i < len(args):
                        value = args[i]
                        i += 1
                    break
        else:
            operands.append(arg)
            continue
        key = syntax.keep.get(spelling)
        if key == _OPERAND:
            operands.append(value)
        elif key is not None:
            values.setdefault(key, []).append(value)
    return values, operands


def _http_host(program: str, args: Sequence[str]) -> str:
    syntax = _HTTP_TOOLS[program]
    _, operands = _read(args, syntax)
    if syntax is _HTTPIE and operands and operands[0].isalpha() and operands[0].isupper():
        operands = operands[1:]  # the method: `http POST example.com/api`
    return _host(operands[0]) if operands else ""


def _database(program: str, args: Sequence[str], syntax: _Syntax) -> str:
    """The database name if the command line gives one, else its host, else "default"."""
    values, operands = _read(args, syntax)
    db = _last(values, "db") or (operands[0] if operands else "")
    host = _last(values, "host")
    if "://" in host:  # mongosh --host mongodb://...
        host, db = _host(host), db or _uri_database(host)
    if "://" in db:
        host, db = _host(db), _uri_database(db)
    elif "=" in db:  # a libpq keyword string: "host=db.example.com dbname=app"
        words = {key: value for key, _, value in (word.partition("=") for word in db.split())}
        host, db = words.get("host", host), words.get("dbname", "")
    elif program.startswith("mongo") and "/" in db:  # mongosh host:27017/app
        host, db = db.split("/", 1)
    if "/" in host:  # a replica set: rs0/h1:27017,h2:27017
        host = host.split("/", 1)[1]
    host = _host(host.split(",", 1)[0]) if host else ""
    return db or host or "default"


def _network_address(program: str, args: Sequence[str]) -> str:
    """`host` or `host:port` of the first remote operand; "" if everything is local."""
    syntax = _NETWORK[program]
    values, operands = _read(args, syntax)
    port = _last(values, "port")
    for option in values.get("option", []):  # -o Port=2222
        words = option.replace("=", " ").split()
        if len(words) == 2 and words[0].lower() == "port":
            port = port or words[1]
    if "rsh" in values:  # rsync -e "ssh -p 2222"
        port = port or _last(_read(_last(values, "rsh").split()[1:], _SSH)[0], "port")
    for operand in operands if program != "ssh" else operands[:1]:
        remote = _remote_host(operand, program)
        if remote is None:
            continue
        host, uri_port = remote
        port = uri_port or port
        return f"{host}:{port}" if port and port != "22" else host
    return ""


def _remote_host(operand: str, program: str) -> tuple[str, str] | None:
    """(host, port from a URI) if the operand names a remote place, else None."""
    if "://" in operand:
        authority = _authority(operand)
        return _host(operand), _port(authority)
    if program == "ssh":
        return _host(operand), ""
    colon = operand.find(":", operand.find("]") + 1 if "[" in operand else 0)  # [::1]:path
    if colon <= 0 or "/" in operand[:colon]:
        return None  # a local path, such as ./a:b
    return _host(operand[:colon]), ""


def _last(values: dict[str, list[str]], key: str) -> str:
    return values[key][-1] if key in values else ""


def _authority(text: str) -> str:
    """`user@host:port` of a URL or a bare address, without scheme, path, query or fragment."""
    rest = text.split("://", 1)[-1]
    for separator in "/?#":
        rest = rest.split(separator, 1)[0]
    return rest


def _host(text: str) -> str:
    """The lower-case host of a URL, URI or `user@host:port`; httpie's `:3000` is localhost."""
    authority = _authority(text).rsplit("@", 1)[-1].split(",", 1)[0]
    if authority.startswith("["):
        return authority[: authority.find("]") + 1].lower()
    host = authority.split(":", 1)[0].lower()
    if not host and text.startswith(":"):
        return "localhost"
    return host


def _port(authority: str) -> str:
    address = authority.rsplit("@", 1)[-1]
    if address.startswith("["):
        address = address[address.find("]") + 1 :]
    return address.rpartition(":")[2] if ":" in address else ""


def _uri_database(uri: str) -> str:
    """The first path segment of a database URI: postgres://host/app?sslmode=x gives app."""
    after_scheme = uri.split("://", 1)[1]
    path = after_scheme.partition("/")[2]
    for separator in "?#/":
        path = path.split(separator, 1)[0]
    return path


def _clean(resource_id: str) -> str:
    """Make a detected id valid whatever the command line held: no spaces, bounded length."""
    text = "".join(c if c.isprintable() and not c.isspace() else "_" for c in resource_id)
    return text[:MAX_LENGTH]
