"""The shared store contract suite, run on a real 3-member etcd cluster."""

import pytest

from tests.contract.test_store_contract import (  # noqa: F401 - collected here against etcd
    test_compare_and_swap, test_concurrent_cas_increments_lose_no_update, test_delete_and_events,
    test_put_get_list_and_revisions, test_txn_is_all_or_nothing, test_wait_wakes_on_change,
)


@pytest.fixture
def store(etcd_store):
    return etcd_store
