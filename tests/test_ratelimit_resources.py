"""Resource ids: detection from realistic command lines and validation."""

from __future__ import annotations

import shlex

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patience.ratelimit.resources import detect_resource, validate_resource_id

CASES = [
    # curl: flags and their values are skipped, whatever their spelling
    ("curl https://api.example.com/v1/users", "api:external:api.example.com"),
    ("curl -sSfL https://API.Example.com:8443/x?y=1#z", "api:external:api.example.com"),
    (
        "curl -H 'Authorization: Bearer t' -o out.json https://a.example.org",
        "api:external:a.example.org",
    ),
    (
        "curl --max-time 5 --retry 3 -X POST -d @body.json http://b.example.net/post",
        "api:external:b.example.net",
    ),
    ("curl -ooutput.txt https://c.example.com", "api:external:c.example.com"),
    ("curl -so /dev/null -w '%{http_code}' https://d.example.com", "api:external:d.example.com"),
    (
        "curl --header=X-A:1 --data-raw '{\"a\": 1}' https://e.example.com/api",
        "api:external:e.example.com",
    ),
    ("curl --url https://f.example.com/health", "api:external:f.example.com"),
    ("curl --url=https://g.example.com", "api:external:g.example.com"),
    ("curl -u user:pass https://user2:secret@h.example.com/", "api:external:h.example.com"),
    ("curl example.com", "api:external:example.com"),
    ("curl localhost:8080/metrics", "api:external:localhost"),
    ("curl http://127.0.0.1:9000/", "api:external:127.0.0.1"),
    ("curl -g 'http://[::1]:8080/x'", "api:external:[::1]"),
    ("curl -f -- https://i.example.com", "api:external:i.example.com"),
    ("/usr/bin/curl https://j.example.com", "api:external:j.example.com"),
    ("curl --version", "command:local:curl"),
    # wget
    ("wget https://downloads.example.com/file.tar.gz", "api:external:downloads.example.com"),
    ("wget -q -O - http://k.example.com/a", "api:external:k.example.com"),
    ("wget --tries 3 --header 'X: y' -P /tmp https://l.example.com", "api:external:l.example.com"),
    ("wget --output-document=x.html https://m.example.com", "api:external:m.example.com"),
    # httpie
    ("http GET https://httpbin.example.org/get", "api:external:httpbin.example.org"),
    ("http POST api.example.io/items name=x X-Token:y", "api:external:api.example.io"),
    ("http --auth u:p --timeout 3 n.example.com", "api:external:n.example.com"),
    ("http :3000/api/users", "api:external:localhost"),
    ("https -a user:pw PUT o.example.com/x", "api:external:o.example.com"),
    # PostgreSQL
    ("psql -h db.example.com -U app -d orders", "database:postgres:orders"),
    ("psql --host=db.example.com --dbname=users -c 'select 1'", "database:postgres:users"),
    ("psql -c 'select 1' -h db.internal", "database:postgres:db.internal"),
    ("psql -p 5433 -h DB2.example.com", "database:postgres:db2.example.com"),
    ("psql analytics", "database:postgres:analytics"),
    ("psql -X -A -t -v ON_ERROR_STOP=1 reports alice", "database:postgres:reports"),
    (
        "psql postgresql://app:pw@pg.example.com:5432/billing?sslmode=require",
        "database:postgres:billing",
    ),
    ("psql postgres://pg.example.com", "database:postgres:pg.example.com"),
    ("psql -d 'host=pg3.example.com dbname=inventory user=x'", "database:postgres:inventory"),
    ("psql 'host=pg4.example.com port=5432'", "database:postgres:pg4.example.com"),
    ("psql -c 'select 1'", "database:postgres:default"),
    # MySQL
    ("mysql -h mysql.example.com -u root -p shop", "database:mysql:shop"),
    ("mysql -hmysql.example.com -uroot -psecret -e 'select 1' shop2", "database:mysql:shop2"),
    ("mysql --host=m.example.com --database=crm", "database:mysql:crm"),
    ("mysql -D warehouse", "database:mysql:warehouse"),
    ("mysql -h m2.example.com -P 3307", "database:mysql:m2.example.com"),
    ("mysql --password -h m3.example.com", "database:mysql:m3.example.com"),
    # MongoDB
    (
        "mongosh mongodb://user:pw@mongo.example.com:27017/catalog?authSource=admin",
        "database:mongodb:catalog",
    ),
    ("mongosh 'mongodb+srv://u:p@cluster0.abcd.mongodb.net/sales'", "database:mongodb:sales"),
    ("mongosh mongodb://mongo2.example.com:27017", "database:mongodb:mongo2.example.com"),
    ("mongo --host mongo3.example.com --port 27018 logs", "database:mongodb:logs"),
    (
        "mongo --host rs0/h1.example.com:27017,h2.example.com:27017",
        "database:mongodb:h1.example.com",
    ),
    ("mongosh --host mongodb://h3.example.com/app", "database:mongodb:app"),
    ("mongosh h4.example.com:27017/metrics", "database:mongodb:metrics"),
    ("mongosh --eval 'db.stats()' mydb", "database:mongodb:mydb"),
    ("mongosh -u admin -p secret", "database:mongodb:default"),
    # ssh / scp / rsync
    ("ssh backup.example.com", "network:tcp:backup.example.com"),
    ("ssh -p 2222 deploy@web1.example.com uptime", "network:tcp:web1.example.com:2222"),
    (
        "ssh -i ~/.ssh/key -o StrictHostKeyChecking=no web2.example.com ls -l /tmp",
        "network:tcp:web2.example.com",
    ),
    ("ssh -o Port=2200 -o BatchMode=yes web3", "network:tcp:web3:2200"),
    ("ssh -oPort=2201 web4", "network:tcp:web4:2201"),
    ("ssh -p 22 web5", "network:tcp:web5"),
    ("ssh ssh://me@web6.example.com:2022", "network:tcp:web6.example.com:2022"),
    ("ssh -J jump.example.com 10.0.0.5", "network:tcp:10.0.0.5"),
    ("ssh -V", "command:local:ssh"),
    ("scp report.pdf me@files.example.com:/srv/reports/", "network:tcp:files.example.com"),
    ("scp -P 2022 -r me@files2.example.com:/var/log ./logs", "network:tcp:files2.example.com:2022"),
    ("scp a.txt 'user@[2001:db8::1]:/tmp'", "network:tcp:[2001:db8::1]"),
    ("scp scp://me@files3.example.com:2200/x .", "network:tcp:files3.example.com:2200"),
    ("scp ./a:b /tmp/c", "command:local:scp"),
    ("rsync -avz src/ backup@nas.example.com:/volume1/backups/", "network:tcp:nas.example.com"),
    ("rsync -az -e 'ssh -p 2222' src/ me@nas2:/srv", "network:tcp:nas2:2222"),
    ("rsync --rsh='ssh -p2223' -a me@nas3:/srv/ dst/", "network:tcp:nas3:2223"),
    (
        "rsync -a --exclude '*.tmp' mirror.example.org::pub/debian ./debian",
        "network:tcp:mirror.example.org",
    ),
    ("rsync -a rsync://mirror2.example.org:8873/pub ./pub", "network:tcp:mirror2.example.org:8873"),
    ("rsync -a --port 8730 mirror3.example.org::pub .", "network:tcp:mirror3.example.org:8730"),
    ("rsync -a /home/me/ /mnt/backup/", "command:local:rsync"),
    # anything else, and our own wrappers seen through
    ("ls -la /tmp", "command:local:ls"),
    ("/usr/local/bin/backup.sh --full", "command:local:backup.sh"),
    ("./scripts/deploy", "command:local:deploy"),
    ("sh -c 'curl https://x.example.com'", "command:local:sh"),
    ("rpr interval --every 30s -- curl https://p.example.com", "api:external:p.example.com"),
    (
        "patience exponential --attempts 3 -- curl -f https://q.example.com",
        "api:external:q.example.com",
    ),
    (
        "rpr interval --every 1s --times 5 -- patience exponential --attempts 3 -- psql -d app",
        "database:postgres:app",
    ),
    ("/work/main/.venv/bin/rpr count --times 2 -- ssh r.example.com", "network:tcp:r.example.com"),
    ("rpr interval --every 1s -- patience fixed -- ./check.sh", "command:local:check.sh"),
    ("rpr --help", "command:local:rpr"),
]


@pytest.mark.parametrize(("command", "expected"), CASES, ids=[c for c, _ in CASES])
def test_detects_the_resource_a_command_uses(command: str, expected: str) -> None:
    assert detect_resource(shlex.split(command)) == expected


def test_odd_program_names_still_give_a_valid_id() -> None:
    detected = detect_resource(["./my script\t.sh"])
    assert detected == "command:local:my_script_.sh"
    assert validate_resource_id(detected) == detected
    assert len(detect_resource(["x" * 1000])) == 256


@given(st.lists(st.text(min_size=1), min_size=1, max_size=8))
def test_any_command_line_gives_a_valid_id(argv: list[str]) -> None:
    """Whatever the arguments, detection never fails and its answer passes validation."""
    for program in (argv[0], "curl", "psql", "mysql", "mongosh", "ssh", "scp", "rsync", "http"):
        detected = detect_resource([program, *argv[1:]])
        assert validate_resource_id(detected) == detected


@pytest.mark.parametrize(
    "argv",
    [
        [],
        [""],
        ["rpr", "interval", "--every", "1s", "--"],
        ["patience", "fixed", "--", "rpr", "--"],
    ],
)
def test_no_command_is_an_error(argv: list[str]) -> None:
    with pytest.raises(
        ValueError, match=r"no command to detect a resource from \(give --resource-id\)"
    ):
        detect_resource(argv)


@pytest.mark.parametrize(
    "text",
    ["api:external:api.example.com", "test-api", "database:postgres:prod_db", "x" * 256, "é:ü"],
)
def test_valid_resource_ids_are_returned_unchanged(text: str) -> None:
    assert validate_resource_id(text) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"resource id is empty \(give one like api:external:example.com\)"),
        ("x" * 257, r"resource id is 257 characters long \(at most 256\)"),
        ("my api", r"resource id 'my api' contains whitespace \(use - or _ instead\)"),
        ("tab\there", r"contains whitespace"),
        ("line\nbreak", r"contains whitespace"),
        ("bell\x07", r"resource id 'bell\\x07' contains a non-printable character"),
        ("zero\u200bwidth", r"contains a non-printable character"),
    ],
)
def test_bad_resource_ids_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        validate_resource_id(text)
    assert "\n" not in str(caught.value)
