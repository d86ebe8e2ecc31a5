"""Intents through the CLI on a SQLite store: the language, apply, a reconcile pass compiles and reports,
the virtual network graph, a proposal answered by the asked tenant, a probe, and bad input as one line."""

from pathlib import Path

import pytest
import yaml

from vnstitch.data import data_path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "intents"
ORDERS = "for group('acme/orders') isolate; allow service('acme/analytics:8443') latency < 20ms bandwidth >= 200Mbps"


@pytest.fixture
def world(cli):
    assert cli("substrate", "import", str(data_path("abilene.xml")))[0] == 0
    code, out, err = cli("apply", "-f", str(EXAMPLES / "networks.yaml"))
    assert code == 0, err
    return cli


def test_parse_prints_an_intent_that_applies_and_equals_the_written_out_example(cli, tmp_path):
    code, out, err = cli("intent", "parse", ORDERS.replace("200Mbps", "200Mbps between 08:00-20:00"),
                         "--name", "orders", "--tenant", "acme")
    assert code == 0, err
    printed = yaml.safe_load(out)
    expanded = yaml.safe_load((EXAMPLES / "orders-expanded.yaml").read_text())
    assert printed["spec"]["expectations"] == expanded["spec"]["expectations"]
    (tmp_path / "i.yaml").write_text(out)
    assert cli("validate", "--offline", str(tmp_path / "i.yaml"))[0] == 0


def test_a_malformed_text_is_one_line_with_line_and_column(cli):
    code, out, err = cli("intent", "parse", "for group('acme/orders')\n  isolat")
    assert code == 1 and out == ""
    assert err.strip().count("\n") == 0 and "line 2, column 3" in err and "'isolate'" in err


def test_apply_reconcile_report_graph_and_a_negotiated_proposal(world):
    cli = world
    code, out, err = cli("apply", "-f", str(EXAMPLES / "orders.yaml"))
    assert code == 0 and out.strip() == "intent/acme/orders created", (out, err)
    assert cli("reconcile", "--once")[0] in (0, 2)
    code, out, err = cli("get", "intents", "--tenant", "acme")
    assert code == 0 and "orders" in out
    code, out, err = cli("get", "stitch", "in-orders-reach-analytics-8443", "--tenant", "acme", "-o", "yaml")
    stitch = yaml.safe_load(out)
    assert stitch["spec"]["services"] == [{"protocol": "tcp", "port": 8443}]
    code, out, err = cli("intent", "reports", "orders", "--tenant", "acme")
    assert code == 0 and out.splitlines()[1].split()[0] == "1"
    code, out, err = cli("get", "vngraph", "--tenant", "acme")
    assert code == 0 and "globex/lake" in out and "sql(tcp/5432)" in out
    # a second intent of acme reaches globex's lake: globex is asked; acme cannot answer for it
    code, out, err = cli("intent", "apply", "lake", "for group('acme/orders') allow service('globex/lake/sql')",
                         "--tenant", "acme")
    assert code == 1  # the isolation of 'orders' does not allow globex/lake
    assert "'lake'" in err and "'orders'" in err
    code, out, err = cli("delete", "intent", "orders", "--tenant", "acme")
    assert code == 0, err
    code, out, err = cli("intent", "apply", "lake", "for group('acme/orders') allow service('globex/lake/sql')",
                         "--tenant", "acme")
    assert code == 0, err
    assert cli("reconcile", "--once")[0] in (0, 2)
    code, out, err = cli("proposal", "list", "--tenant", "globex")
    assert code == 0 and "acme-lake-reach-sql" in out and "Pending" in out
    code, out, err = cli("proposal", "accept", "acme-lake-reach-sql", "--tenant", "globex", "--note", "ok")
    assert code == 0 and "accepted" in out and "acme/orders" in out, (out, err)
    assert cli("reconcile", "--once")[0] in (0, 2)
    code, out, err = cli("get", "stitch", "in-lake-reach-sql", "--tenant", "acme")
    assert code == 0, err


def test_probe_says_what_is_on_offer_and_changes_nothing(world):
    cli = world
    code, out, err = cli("intent", "probe", ORDERS.replace("20ms", "0.5ms"), "--tenant", "acme")
    assert code == 1 and "not feasible now" in out and "reach-analytics-8443" in out
    code, out, err = cli("intent", "probe", ORDERS, "--tenant", "acme", "-o", "json")
    assert code == 0 and '"feasible": true' in out
    assert "orders" not in cli("get", "intents", "-A")[1]
