"""JobMarket v2: every transition, every revert path, each time limit exactly at and one second after it, and one
regression test per v1 exploit (each fails under the v1 rules).

Time: `world.at(t)` makes the next transaction land in a block whose timestamp is exactly `t`; `_sides` runs one
check at the limit and, from the same chain state, another one second after it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eth_utils import keccak
from web3.logs import DISCARD

from llmos_chain.attestation import digest
from llmos_chain.chain.connect import connect
from llmos_chain.chain.contracts import Sender, call
from llmos_chain.chain.deploy import DeployParams, deploy_suite
from llmos_chain.chain.market import JobState, JobTerms, ReopenCause, WorkerParams, ZERO_ADDRESS, client_key
from llmos_chain.crypto.keys import KeyKind
from tests.helpers import (
    CHALLENGE_WINDOW,
    CLIENT_KEY,
    COLLATERAL_PER_GPU,
    DISPUTE_BOND,
    DISPUTE_WINDOW,
    GRANT_TIMEOUT,
    PRICE,
    RUN_TIME,
    STAKE,
    UNBONDING,
    WRAPPED_KEY,
    World,
    deploy_world,
    h,
    reverts,
)

DAY = 24 * 3600


def _sides(world: World, limit: int, at_limit: Callable[[], Any], after_limit: Callable[[], Any]) -> None:
    """Run `at_limit` with the next block at exactly `limit`, then undo it and run `after_limit` at `limit + 1`."""
    tester = world.w3.provider.ethereum_tester  # type: ignore[attr-defined]
    snapshot = tester.take_snapshot()
    world.at(limit)
    at_limit()
    tester.revert_to_snapshot(snapshot)
    world.at(limit + 1)
    after_limit()


def _mined(world: World, receipt: Any, t: int) -> Any:
    assert world.mined_at(receipt) == t, "the transaction was not mined at the intended second"
    return receipt


def _events(world: World, contract: Any, name: str, receipt: Any) -> list[Any]:
    return [e["args"] for e in getattr(contract.events, name)().process_receipt(receipt, errors=DISCARD)]


def _assigned(world: World, **overrides: Any) -> int:
    job = world.post(**overrides)
    world.assign(job)
    return job


def _claimed(world: World) -> int:
    job = world.run_job()
    world.act(world.operator).report_failure(job, 2, h("oom"))
    return job


def _stake_and_lock(world: World) -> tuple[int, int, int]:
    record = world.worker_record()
    return record.stake, record.locked, record.active_jobs


# ================================================================ client keys


def test_client_keys_of_both_kinds(world: World) -> None:
    client = world.act(world.client)
    first, receipt = client.register_client_key(KeyKind.X25519, CLIENT_KEY)
    event = _events(world, world.suite.market, "ClientKeyRegistered", receipt)[0]
    assert (event["keyId"], event["client"], event["keyKind"], event["key"]) == (1, world.client.address, 0, CLIENT_KEY)
    hybrid = bytes(range(256)) * 4 + bytes(192)
    second, _ = world.act(world.stranger).register_client_key(KeyKind.MLKEM768_X25519, hybrid)  # anyone: a public key is public
    assert second == 2 == world.suite.market.functions.clientKeyCount().call()
    assert client_key(world.suite, 2).kind is KeyKind.MLKEM768_X25519 and client_key(world.suite, 2).public == hybrid
    fn = world.suite.market.functions.registerClientKey
    for kind, key in ((0, b"\x01" * 31), (0, hybrid), (1, CLIENT_KEY), (2, CLIENT_KEY)):
        with reverts("JobInvalidClientKey", keyKind=kind, length=len(key)):
            world.send(world.client, fn(kind, key))
    # a job may name any registered key, whoever registered it
    job = world.post(client_key_id=second)
    assert world.job(job).client_key_id == 2


# ================================================================ post


def test_post_eth_escrows_payment_and_emits_the_terms(world: World) -> None:
    before = world.balance(world.suite.market.address)
    request = world.request()
    job_id, receipt = world.act(world.client).post_job(request)
    view = world.job(job_id)
    assert (view.state, view.client, view.escrow, view.token, view.worker, view.worker_id) == (
        JobState.OPEN, world.client.address, PRICE, ZERO_ADDRESS, ZERO_ADDRESS, 0)
    assert view.since == world.mined_at(receipt) and view.due_at is None
    assert view.terms == JobTerms(world.client.address, world.owner.address, ZERO_ADDRESS, PRICE, world.dataset_id,
                                  request.client_key_id, 1, 16, request.deadline, RUN_TIME, CHALLENGE_WINDOW)
    assert view.terms.latest_start == request.deadline - RUN_TIME
    assert world.balance(world.suite.market.address) - before == PRICE
    event = _events(world, world.suite.market, "JobPosted", receipt)[0]
    assert (event["jobId"], event["client"], event["datasetId"]) == (job_id, world.client.address, world.dataset_id)
    assert event["baseModelHash"] == keccak(text="base-model") and event["recipeURI"] == "file:///tmp/recipe.json"
    assert world.suite.market.functions.jobCount().call() == job_id == 1
    # The record stores the terms' hash only; Python and the contract hash alike.
    raw = world.suite.market.functions.getJob(job_id).call()
    assert bytes(raw[4]) == view.terms.hash == bytes(world.suite.market.functions.hashTerms(view.terms.as_tuple()).call())


def test_post_erc20_pulls_exactly_the_amount(world: World) -> None:
    token = world.fund_token()
    job_id, _ = world.act(world.client).post_job(world.request(token=token.address, amount=7 * 10**18))
    assert token.functions.balanceOf(world.suite.market.address).call() == 7 * 10**18
    assert world.job(job_id).token == token.address
    assert world.balance(world.suite.market.address) == 0


def test_any_token_works_without_a_registry(world: World) -> None:
    """v1 exploit 6: the v1 market interned tokens in a bounded registry that could be filled; v2 keeps none."""
    world.fund_token()
    names = {item.get("name") for item in world.suite.market.abi}
    assert not {"tokenId", "TokenRegistered", "tokenCount"} & names
    tokens = [world.suite.token]
    for _ in range(3):
        other, _ = Sender(world.w3, world.deployer).deploy("TestToken")
        world.send(world.client, other.functions.mint(world.client.address, 10**20))
        world.send(world.client, other.functions.approve(world.suite.market.address, 2**256 - 1))
        tokens.append(other)
    for i, token in enumerate(tokens):
        job = world.post(token=token.address, amount=100 + i)
        world.act(world.client).cancel(job)
        world.act(world.client).withdraw(token.address)
        assert token.functions.balanceOf(world.suite.market.address).call() == 0


def test_post_rejects_bad_requests(world: World) -> None:
    client = world.act(world.client)
    for field_name, overrides in [
        ("amount", {"amount": 0}),
        ("gpuCount", {"gpu_count": 0}),
        ("runTime", {"run_time": 0}),
        ("deadline", {"deadline": world.now() - 1}),
    ]:
        with reverts("JobInvalidRequest", field=field_name):
            client.post_job(world.request(**overrides))
    for dataset_id in (0, 99, 2**64 + 1):
        with reverts("JobUnknownDataset", datasetId=dataset_id):
            client.post_job(world.request(dataset_id=dataset_id))
    count = world.suite.market.functions.clientKeyCount().call()
    for key_id in (0, count + 1):
        with reverts("JobUnknownClientKey", keyId=key_id):
            client.post_job(world.request(client_key_id=key_id))


def test_post_deadline_must_leave_one_run_window(world: World) -> None:
    """`now + runTime <= deadline`: a post at `deadline - runTime` is the last one that leaves a fair run window."""
    world.request()  # registers the client key first
    t = world.next_time() + 1000
    request = world.request(deadline=t + RUN_TIME)

    def at_limit() -> None:
        job, receipt = world.act(world.client).post_job(request)
        _mined(world, receipt, t)
        assert world.terms(job).latest_start == t

    def after() -> None:
        with reverts("JobInvalidRequest", field="deadline"):
            world.act(world.client).post_job(request)

    _sides(world, t, at_limit, after)


def test_post_rejects_wrong_payment(world: World) -> None:
    fn = world.suite.market.functions.postJob(world.request().as_tuple())
    with reverts("JobWrongPayment", expected=PRICE, received=PRICE - 1):
        world.send(world.client, fn, value=PRICE - 1)
    token = world.fund_token()
    fn = world.suite.market.functions.postJob(world.request(token=token.address).as_tuple())
    with reverts("JobWrongPayment", expected=0, received=1):
        world.send(world.client, fn, value=1)


def test_post_erc20_without_allowance_reverts_with_the_token_error(world: World) -> None:
    token = world.suite.token
    world.send(world.stranger, token.functions.mint(world.stranger.address, 10**18))
    with reverts("ERC20InsufficientAllowance"):
        world.act(world.stranger).post_job(world.request(token=token.address))


def test_post_jobs_batches_eth_and_tokens(world: World) -> None:
    token = world.fund_token()
    other_dataset, _ = world.act(world.stranger).register_dataset(h("r2"), h("c2"), 10, "file:///2")
    requests = [world.request(amount=10), world.request(token=token.address, amount=20), world.request(amount=30, dataset_id=other_dataset)]
    with reverts("JobWrongPayment", expected=40, received=41):
        world.send(world.client, world.suite.market.functions.postJobs([r.as_tuple() for r in requests]), value=41)
    ids, receipt = world.act(world.client).post_jobs(requests)
    assert ids == [1, 2, 3]
    assert [world.job(i).terms.dataset_owner for i in ids] == [world.owner.address, world.owner.address, world.stranger.address]
    assert world.balance(world.suite.market.address) == 40
    assert token.functions.balanceOf(world.suite.market.address).call() == 20
    bad = [world.request(amount=1), world.request(amount=1, dataset_id=77)]
    with reverts("JobUnknownDataset", datasetId=77):  # all or nothing
        world.act(world.client).post_jobs(bad)
    assert world.suite.market.functions.jobCount().call() == 3


# ================================================================ terms


def test_every_call_checks_the_terms(world: World) -> None:
    job = _assigned(world)
    terms = world.terms(job)
    forged = JobTerms(**{**terms.__dict__, "amount": terms.amount + 1})
    client, owner, operator = world.act(world.client), world.act(world.owner), world.act(world.operator)
    for action in (
        lambda: client.cancel(job, forged),
        lambda: owner.grant(job, WRAPPED_KEY, forged),
        lambda: owner.drop_assignment(job, forged),
        lambda: operator.report_failure(job, 1, h("x"), forged),
        lambda: world.act(world.stranger).reclaim(job, forged),
        lambda: world.act(world.stranger).timeout_grant(job, forged),
    ):
        with reverts("JobTermsMismatch", jobId=job):
            action()
    with reverts("JobNotFound", jobId=999):
        client.cancel(999, terms)
    with reverts("JobNotFound", jobId=999):
        call(world.suite.market.functions.getJob(999))


# ================================================================ cancel


def test_cancel_refunds_an_open_job(world: World) -> None:
    job = world.post()
    receipt = world.act(world.client).cancel(job)
    assert _events(world, world.suite.market, "JobCancelled", receipt)[0]["refund"] == PRICE
    assert world.state(job) == JobState.CANCELLED
    assert world.credits(world.client.address) == PRICE


def test_cancel_reverts(world: World) -> None:
    job = world.run_job()
    with reverts("JobNotClient", jobId=job, caller=world.stranger.address):
        world.act(world.stranger).cancel(job)
    with reverts("JobNotClient", jobId=job, caller=world.owner.address):
        world.act(world.owner).cancel(job)
    with reverts("JobInvalidState", jobId=job, state=JobState.RUNNING):  # once granted, the worker holds the data
        world.act(world.client).cancel(job)
    open_job = world.post()
    world.act(world.client).cancel(open_job)
    with reverts("JobInvalidState", jobId=open_job, state=JobState.CANCELLED):
        world.act(world.client).cancel(open_job)


# ================================================================ assign


def test_assign_locks_collateral_and_names_the_operator(world: World) -> None:
    job = world.post(gpu_count=2)
    receipt = world.assign(job)
    event = _events(world, world.suite.market, "JobAssigned", receipt)[0]
    assert (event["jobId"], event["workerId"], event["operator"]) == (job, 1, world.operator.address)
    view = world.job(job)
    assert (view.state, view.worker, view.worker_id, view.since) == (JobState.ASSIGNED, world.worker, 1, world.mined_at(receipt))
    assert _stake_and_lock(world) == (STAKE, 2 * COLLATERAL_PER_GPU, 1)
    assert world.locked(1) == 2 * COLLATERAL_PER_GPU
    with reverts("JobInvalidState", jobId=job, state=JobState.ASSIGNED):
        world.assign(job)


def test_assign_until_the_latest_start(world: World) -> None:
    job = world.post()
    latest = world.terms(job).latest_start

    def at_limit() -> None:
        _mined(world, world.assign(job), latest)

    def after() -> None:
        with reverts("JobTooLateToStart", jobId=job, latestStart=latest):
            world.assign(job)

    _sides(world, latest, at_limit, after)


def test_assign_many_locks_once_for_all(world: World) -> None:
    jobs = [world.post(gpu_count=g) for g in (1, 2, 3)]
    world.act(world.operator).assign_many(jobs, world.worker)
    assert [world.state(j) for j in jobs] == [JobState.ASSIGNED] * 3
    assert _stake_and_lock(world) == (STAKE, 6 * COLLATERAL_PER_GPU, 3)
    terms = [world.terms(j).as_tuple() for j in jobs]
    fn = world.suite.market.functions.assignMany
    with reverts("JobInvalidRequest", field="batch"):
        world.send(world.operator, fn([], [], 1))
    with reverts("JobInvalidRequest", field="batch"):
        world.send(world.operator, fn(jobs[:2], terms[:1], 1))
    fresh = [world.post(), world.post(gpu_count=9)]
    with reverts("WorkerInsufficientCapabilities"):  # the largest job decides, and one misfit stops the batch
        world.act(world.operator).assign_many(fresh, world.worker)
    assert world.state(fresh[0]) == JobState.OPEN


# ================================================================ drop / grant timeout


def test_client_or_owner_drops_an_ungranted_assignment(world: World) -> None:
    """v1 exploit 4 (squatting): the client and the dataset owner can free a job a worker sits on without a grant."""
    for dropper in (world.client, world.owner):
        job = _assigned(world)
        receipt = world.act(dropper).drop_assignment(job)
        event = _events(world, world.suite.market, "JobReopened", receipt)[0]
        assert (event["jobId"], event["workerId"], event["cause"]) == (job, 1, ReopenCause.DROPPED)
        assert world.state(job) == JobState.OPEN
        assert _stake_and_lock(world) == (STAKE, 0, 0)
    job = _assigned(world)
    for outsider in (world.stranger, world.operator, world.worker_key):
        with reverts("JobNotClientOrOwner", jobId=job, caller=outsider.address):
            world.act(outsider).drop_assignment(job)
    world.grant(job)
    with reverts("JobInvalidState", jobId=job, state=JobState.RUNNING):
        world.act(world.client).drop_assignment(job)


def test_client_cancels_an_assigned_job(world: World) -> None:
    """v1 exploit 4: v1 refused to cancel an Assigned job, so a squatter held the client's escrow hostage."""
    job = _assigned(world, gpu_count=3)
    world.act(world.client).cancel(job)
    assert world.state(job) == JobState.CANCELLED
    assert world.credits(world.client.address) == PRICE
    assert _stake_and_lock(world) == (STAKE, 0, 0)


def test_grant_timeout_exactly_after_the_timeout(world: World) -> None:
    job = world.post()
    receipt = world.assign(job)
    timeout_at = world.mined_at(receipt) + GRANT_TIMEOUT

    def at_limit() -> None:
        with reverts("JobGrantTimeoutNotReached", jobId=job, timeoutAt=timeout_at):
            world.act(world.stranger).timeout_grant(job)
        _mined(world, world.grant(job), timeout_at)  # the owner is still in time

    def after() -> None:
        receipt = _mined(world, world.act(world.stranger).timeout_grant(job), timeout_at + 1)
        event = _events(world, world.suite.market, "JobReopened", receipt)[0]
        assert (event["workerId"], event["cause"]) == (1, ReopenCause.GRANT_TIMEOUT)
        view = world.job(job)
        assert (view.state, view.worker_id) == (JobState.OPEN, 1)  # the id stays: it bars a quick retake
        assert _stake_and_lock(world) == (STAKE, 0, 0)

    _sides(world, timeout_at, at_limit, after)


def test_retake_is_barred_for_one_grant_timeout(world: World) -> None:
    """v1 exploit 4: a worker squatted by letting the grant time out and taking the job again at once."""
    other = world.register_worker(operator=world.accounts[7], worker_key=world.accounts[8])
    job = _assigned(world)
    world.advance(GRANT_TIMEOUT + 1)
    reopened = world.mined_at(world.act(world.stranger).timeout_grant(job))
    until = reopened + GRANT_TIMEOUT

    def at_limit() -> None:
        _mined(world, world.assign(job), until)

    def before_limit() -> None:
        with reverts("JobRetakeTooSoon", jobId=job, until=until):
            world.assign(job)
        # another worker is not barred
        world.assign(job, operator=world.accounts[7], worker=other)
        assert world.job(job).worker == other

    tester = world.w3.provider.ethereum_tester  # type: ignore[attr-defined]
    snapshot = tester.take_snapshot()
    world.at(until - 1)
    before_limit()
    tester.revert_to_snapshot(snapshot)
    world.at(until)
    at_limit()


# ================================================================ grant


def test_grant_starts_the_run_window(world: World) -> None:
    job = _assigned(world)
    receipt = world.grant(job)
    t = world.mined_at(receipt)
    event = _events(world, world.suite.market, "AccessGranted", receipt)[0]
    assert (event["jobId"], event["dueAt"], event["wrappedKey"]) == (job, t + RUN_TIME, WRAPPED_KEY)
    view = world.job(job)
    assert (view.state, view.since, view.due_at) == (JobState.RUNNING, t, t + RUN_TIME)
    can_read = world.suite.market.functions.canRead
    assert can_read(job, world.worker).call()
    assert not can_read(job, world.stranger.address).call() and not can_read(job, ZERO_ADDRESS).call()
    assert not can_read(job + 1, world.worker).call()


def test_grant_reverts(world: World) -> None:
    job = world.post()
    with reverts("JobInvalidState", jobId=job, state=JobState.OPEN):
        world.grant(job)
    world.assign(job)
    for outsider in (world.stranger, world.client, world.operator):
        with reverts("JobNotDatasetOwner", jobId=job, caller=outsider.address):
            world.grant(job, owner=outsider)
    with reverts("JobInvalidRequest", field="wrappedKey"):
        world.grant(job, wrapped_key=b"")
    world.grant(job)
    with reverts("JobInvalidState", jobId=job, state=JobState.RUNNING):
        world.grant(job)


def test_grant_and_reclaim_meet_at_the_latest_start(world: World) -> None:
    job = _assigned(world)
    latest = world.terms(job).latest_start
    deadline = world.terms(job).deadline

    def at_limit() -> None:
        with reverts("JobNotExpirable", jobId=job, expiresAfter=latest):
            world.act(world.stranger).reclaim(job)
        receipt = _mined(world, world.grant(job), latest)
        assert _events(world, world.suite.market, "AccessGranted", receipt)[0]["dueAt"] == deadline  # a full window

    def after() -> None:
        with reverts("JobTooLateToStart", jobId=job, latestStart=latest):
            world.grant(job)
        receipt = _mined(world, world.act(world.stranger).reclaim(job), latest + 1)
        assert _events(world, world.suite.market, "JobExpired", receipt)[0]["slashed"] is False
        assert world.state(job) == JobState.EXPIRED
        assert world.credits(world.client.address) == PRICE
        assert _stake_and_lock(world) == (STAKE, 0, 0)

    _sides(world, latest, at_limit, after)


# ================================================================ submit


def test_submit_records_digest_and_signer(world: World) -> None:
    """v1 exploit 9: `ResultSubmitted` logs the signer that counted, so a later key rotation cannot blur it."""
    job = world.run_job()
    att, signature = world.attest(job)
    receipt = world.act(world.stranger).submit(job, att, signature)  # anyone may relay
    event = _events(world, world.suite.market, "ResultSubmitted", receipt)[0]
    assert event["digest"] == digest(att, world.conn.chain_id, world.suite.market.address)
    assert event["digest"] == world.suite.market.functions.attestationDigest(att.as_tuple()).call()
    assert (event["jobId"], event["worker"], event["signer"]) == (job, world.worker, world.worker)
    assert (event["outputHash"], event["startTime"], event["endTime"]) == (att.output_hash, att.start_time, att.end_time)
    assert world.state(job) == JobState.SUBMITTED


def test_submit_rejects_mismatched_attestations(world: World) -> None:
    job = world.run_job()
    operator = world.act(world.operator)
    now = world.now()
    cases = [
        ("jobId", world.attestation(job, job_id=job + 1)),
        ("worker", world.attestation(job, worker=world.stranger.address)),
        ("time", world.attestation(job, start_time=now, end_time=now + 3600)),  # ends in the future
    ]
    for field_name, att in cases:
        with reverts("JobAttestationMismatch", jobId=job, field=field_name):
            operator.submit(job, att, world.sign(att))
    # start after end (the Python type refuses to build it; the contract refuses it too)
    raw = list(world.attestation(job).as_tuple())
    raw[8], raw[9] = now, now - 1
    with reverts("JobAttestationMismatch", jobId=job, field="time"):
        world.send(world.operator, world.suite.market.functions.submitResult(job, world.terms(job).as_tuple(), tuple(raw), b"\0" * 65))


def test_submit_rejects_foreign_signatures(world: World) -> None:
    job = world.run_job()
    operator = world.act(world.operator)
    att = world.attestation(job)
    bad = [
        world.sign(att, key=world.stranger),  # not the worker's signer
        world.sign(att, key=world.operator),  # not even its operator
        world.sign(att, chain_id=world.conn.chain_id + 1),  # another chain
        world.sign(att, market=world.suite.datasets.address),  # another contract
        world.sign(world.attestation(job, output_hash=h("other"))),  # one field changed after signing
        b"\x00" * 65,
        b"",
    ]
    for signature in bad:
        with reverts("JobInvalidAttestationSignature", jobId=job, signer=world.worker):
            operator.submit(job, att, signature)
    assert world.state(job) == JobState.RUNNING


def test_submit_outside_running(world: World) -> None:
    job = _assigned(world)
    att, signature = world.attest(job)
    with reverts("JobInvalidState", jobId=job, state=JobState.ASSIGNED):
        world.act(world.operator).submit(job, att, signature)


def test_submit_and_reclaim_meet_at_the_end_of_the_run_window(world: World) -> None:
    job = world.run_job(gpu_count=3)
    due = world.job(job).due_at
    assert due is not None

    def at_limit() -> None:
        with reverts("JobNotExpirable", jobId=job, expiresAfter=due):
            world.act(world.client).reclaim(job)
        att, signature = world.attest(job, end_time=due)
        _mined(world, world.act(world.operator).submit(job, att, signature), due)
        assert world.state(job) == JobState.SUBMITTED

    def after() -> None:
        att, signature = world.attest(job)
        with reverts("JobRunTimeOver", jobId=job, dueAt=due):
            world.act(world.operator).submit(job, att, signature)
        receipt = _mined(world, world.act(world.stranger).reclaim(job), due + 1)
        assert _events(world, world.suite.market, "JobExpired", receipt)[0]["slashed"] is True
        refund = _events(world, world.suite.market, "JobRefunded", receipt)[0]
        assert (refund["amount"], refund["slashed"]) == (PRICE, 3 * COLLATERAL_PER_GPU)
        assert world.credits(world.client.address) == PRICE + 3 * COLLATERAL_PER_GPU
        assert _stake_and_lock(world) == (STAKE - 3 * COLLATERAL_PER_GPU, 0, 0)

    _sides(world, due, at_limit, after)


def test_submit_accepts_an_eip1271_signer(world: World) -> None:
    key = world.accounts[7]
    wallet, _ = Sender(world.w3, key).deploy("TestSmartWallet", key.address)
    contract_worker = world.accounts[8].address
    world.act(world.operator).register_worker(contract_worker, WorkerParams(wallet.address, "L4", 1, 24, 10**14, b"\x02" * 32), STAKE)
    job = world.post()
    world.assign(job, worker=contract_worker)
    world.grant(job)
    att = world.attestation(job, worker=contract_worker)
    with reverts("JobInvalidAttestationSignature", signer=wallet.address):
        world.act(world.operator).submit(job, att, world.sign(att, key=world.stranger))
    receipt = world.act(world.operator).submit(job, att, world.sign(att, key=key))
    assert _events(world, world.suite.market, "ResultSubmitted", receipt)[0]["signer"] == wallet.address
    assert world.state(job) == JobState.SUBMITTED


def test_rotated_signer_voids_the_old_signers_attestations(world: World) -> None:
    """v1 exploit 9: after a rotation (e.g. a leaked key) the old signer's unsubmitted attestations are void."""
    job = world.run_job()
    old_att, old_signature = world.attest(job)  # signed by the worker's own key, its signer so far
    new_signer = world.accounts[9]
    params = WorkerParams(new_signer.address, "H100-80GB", 8, 80, 10**15, b"\x03" * 32)
    world.send(world.operator, world.suite.workers.functions.update(world.worker, params.as_tuple()))
    with reverts("JobInvalidAttestationSignature", jobId=job, signer=new_signer.address):
        world.act(world.stranger).submit(job, old_att, old_signature)
    att, signature = world.attest(job)
    assert world.signer_of(job) == new_signer
    receipt = world.act(world.stranger).submit(job, att, signature)
    assert _events(world, world.suite.market, "ResultSubmitted", receipt)[0]["signer"] == new_signer.address


# ================================================================ failure reports


def test_failure_before_the_grant_reopens_the_job(world: World) -> None:
    """v1 exploit 3: v1 ended the job Failed on a report before the grant, killing the client's order for nothing."""
    job = _assigned(world, gpu_count=2)
    receipt = world.act(world.worker_key).report_failure(job, 1, h("no gpu"))  # the signer may report too
    failure = _events(world, world.suite.market, "FailureReported", receipt)[0]
    assert (failure["jobId"], failure["workerId"], failure["reason"], failure["detailsHash"]) == (job, 1, 1, h("no gpu"))
    assert _events(world, world.suite.market, "JobReopened", receipt)[0]["cause"] == ReopenCause.RELEASED
    assert world.state(job) == JobState.OPEN
    assert world.credits(world.client.address) == 0  # the escrow stays on the job
    assert _stake_and_lock(world) == (STAKE, 0, 0)
    with reverts("JobRetakeTooSoon", jobId=job):
        world.assign(job)
    other = world.register_worker(operator=world.accounts[7], worker_key=world.accounts[8])
    world.assign(job, operator=world.accounts[7], worker=other)
    assert world.job(job).worker == other


def test_failure_report_reverts(world: World) -> None:
    job = world.post()
    with reverts("JobInvalidState", state=JobState.OPEN):
        world.act(world.operator).report_failure(job, 1, h("x"))
    world.assign(job)
    for outsider in (world.stranger, world.client, world.owner):
        with reverts("JobNotWorkerAuthority", jobId=job, caller=outsider.address):
            world.act(outsider).report_failure(job, 1, h("x"))


def test_failure_in_the_window_is_claimed_and_accepted(world: World) -> None:
    job = _claimed(world)
    view = world.job(job)
    assert view.state == JobState.FAILURE_CLAIMED
    assert _stake_and_lock(world) == (STAKE, COLLATERAL_PER_GPU, 1)  # the claim is open to challenge
    receipt = world.act(world.client).accept(job)
    assert _events(world, world.suite.market, "JobFailed", receipt)[0]["jobId"] == job
    assert world.state(job) == JobState.FAILED
    assert world.credits(world.client.address) == PRICE
    assert world.credits(world.operator.address) == 0
    assert _stake_and_lock(world) == (STAKE, 0, 0)


def test_failure_report_and_reclaim_meet_at_the_end_of_the_run_window(world: World) -> None:
    """v1 exploit 2: a worker that held the data past its run time could escape the slash with a late failure report."""
    job = world.run_job(gpu_count=2)
    due = world.job(job).due_at
    assert due is not None

    def at_limit() -> None:
        _mined(world, world.act(world.operator).report_failure(job, 1, h("late but in time")), due)
        assert world.state(job) == JobState.FAILURE_CLAIMED

    def after() -> None:
        with reverts("JobRunTimeOver", jobId=job, dueAt=due):
            world.act(world.operator).report_failure(job, 1, h("too late"))
        with reverts("JobRunTimeOver", jobId=job, dueAt=due):
            world.act(world.worker_key).report_failure(job, 1, h("too late"))
        world.act(world.client).reclaim(job)
        assert world.state(job) == JobState.EXPIRED
        assert world.credits(world.client.address) == PRICE + 2 * COLLATERAL_PER_GPU
        assert _stake_and_lock(world) == (STAKE - 2 * COLLATERAL_PER_GPU, 0, 0)

    _sides(world, due, at_limit, after)


def test_failure_claim_disputed_and_ruled_against_the_worker(world: World) -> None:
    """v1 exploit 2: a failure report could not be challenged; now the client disputes it (for the bond)."""
    job = _claimed(world)
    receipt = world.act(world.client).dispute(job, h("it ran fine"))
    t = world.mined_at(receipt)
    event = _events(world, world.suite.market, "JobDisputed", receipt)[0]
    assert (event["reasonHash"], event["bond"], event["resolveBy"]) == (h("it ran fine"), DISPUTE_BOND, t + DISPUTE_WINDOW)
    assert world.state(job) == JobState.FAILURE_DISPUTED
    receipt = world.act(world.arbiter).resolve_dispute(job, False)
    resolved = _events(world, world.suite.market, "DisputeResolved", receipt)[0]
    assert (resolved["workerWins"], resolved["byDefault"]) == (False, False)
    assert world.state(job) == JobState.REFUNDED
    assert world.credits(world.client.address) == PRICE + COLLATERAL_PER_GPU + DISPUTE_BOND
    assert _stake_and_lock(world) == (STAKE - COLLATERAL_PER_GPU, 0, 0)
    slashed = _events(world, world.suite.workers, "WorkerSlashed", receipt)[0]
    assert (slashed["worker"], slashed["jobId"], slashed["amount"]) == (world.worker, job, COLLATERAL_PER_GPU)


def test_failure_claim_upheld_pays_the_bond_to_the_operator(world: World) -> None:
    job = _claimed(world)
    world.act(world.client).dispute(job, h("doubt"))
    world.act(world.arbiter).resolve_dispute(job, True)
    assert world.state(job) == JobState.FAILED
    assert world.credits(world.client.address) == PRICE
    assert world.credits(world.operator.address) == DISPUTE_BOND
    assert _stake_and_lock(world) == (STAKE, 0, 0)


def test_failure_claim_challenge_window(world: World) -> None:
    job = _claimed(world)
    closes = world.job(job).since + CHALLENGE_WINDOW

    def at_limit() -> None:
        with reverts("JobChallengeWindowOpen", jobId=job, closesAt=closes):
            world.act(world.stranger).finalize(job)
        _mined(world, world.act(world.client).dispute(job, h("x")), closes)
        assert world.state(job) == JobState.FAILURE_DISPUTED

    def after() -> None:
        with reverts("JobChallengeWindowClosed", jobId=job, closedAt=closes):
            world.act(world.client).dispute(job, h("x"))
        _mined(world, world.act(world.stranger).finalize(job), closes + 1)
        assert world.state(job) == JobState.FAILED
        assert world.credits(world.client.address) == PRICE
        assert _stake_and_lock(world) == (STAKE, 0, 0)

    _sides(world, closes, at_limit, after)


# ================================================================ accept / dispute / finalize


def test_accept_pays_the_operator_and_unlocks(world: World) -> None:
    job = world.submitted_job()
    receipt = world.act(world.client).accept(job)
    settled = _events(world, world.suite.market, "JobSettled", receipt)[0]
    assert (settled["jobId"], settled["payee"], settled["amount"]) == (job, world.operator.address, PRICE)
    assert world.state(job) == JobState.SETTLED
    assert world.credits(world.operator.address) == PRICE
    assert _stake_and_lock(world) == (STAKE, 0, 0)


def test_accept_reverts(world: World) -> None:
    job = world.run_job()
    with reverts("JobInvalidState", state=JobState.RUNNING):
        world.act(world.client).accept(job)
    world.submit(job)
    for outsider in (world.operator, world.owner, world.stranger):
        with reverts("JobNotClient", caller=outsider.address):
            world.act(outsider).accept(job)


def test_dispute_and_finalize_meet_at_the_end_of_the_challenge_window(world: World) -> None:
    job = world.submitted_job()
    closes = world.job(job).since + CHALLENGE_WINDOW

    def at_limit() -> None:
        with reverts("JobChallengeWindowOpen", jobId=job, closesAt=closes):
            world.act(world.stranger).finalize(job)
        _mined(world, world.act(world.client).dispute(job, h("bad model")), closes)
        assert world.state(job) == JobState.DISPUTED

    def after() -> None:
        with reverts("JobChallengeWindowClosed", jobId=job, closedAt=closes):
            world.act(world.client).dispute(job, h("bad model"))
        _mined(world, world.act(world.stranger).finalize(job), closes + 1)
        assert world.state(job) == JobState.SETTLED
        assert world.credits(world.operator.address) == PRICE

    _sides(world, closes, at_limit, after)


def test_dispute_needs_the_exact_bond(world: World) -> None:
    """v1 exploit 7: disputes were free, so a client could stall every payment at no cost."""
    job = world.submitted_job()
    client = world.act(world.client)
    for paid in (0, DISPUTE_BOND - 1, DISPUTE_BOND + 1):
        with reverts("JobWrongPayment", expected=DISPUTE_BOND, received=paid):
            client.dispute(job, h("x"), bond=paid)
    with reverts("JobNotClient", caller=world.stranger.address):
        world.act(world.stranger).dispute(job, h("x"))
    before = world.balance(world.suite.market.address)
    client.dispute(job, h("x"))
    assert world.balance(world.suite.market.address) == before + DISPUTE_BOND
    with reverts("JobInvalidState", state=JobState.DISPUTED):
        client.dispute(job, h("again"))
    running = world.run_job()
    with reverts("JobInvalidState", state=JobState.RUNNING):
        client.dispute(running, h("x"))


def test_arbiter_rules_against_the_worker(world: World) -> None:
    job = world.submitted_job()
    world.act(world.client).dispute(job, h("bad model"))
    receipt = world.act(world.arbiter).resolve_dispute(job, False)
    refund = _events(world, world.suite.market, "JobRefunded", receipt)[0]
    assert (refund["client"], refund["amount"], refund["slashed"]) == (world.client.address, PRICE, COLLATERAL_PER_GPU)
    assert world.state(job) == JobState.REFUNDED
    assert world.credits(world.client.address) == PRICE + COLLATERAL_PER_GPU + DISPUTE_BOND  # the bond comes back
    assert world.credits(world.operator.address) == 0
    assert _stake_and_lock(world) == (STAKE - COLLATERAL_PER_GPU, 0, 0)
    assert world.balance(world.suite.workers.address) == STAKE - COLLATERAL_PER_GPU


def test_arbiter_sides_with_the_worker(world: World) -> None:
    job = world.submitted_job()
    world.act(world.client).dispute(job, h("meh"))
    world.act(world.arbiter).resolve_dispute(job, True)
    assert world.state(job) == JobState.SETTLED
    assert world.credits(world.operator.address) == PRICE + DISPUTE_BOND
    assert world.credits(world.client.address) == 0


def test_dispute_resolution_reverts(world: World) -> None:
    job = world.submitted_job()
    with reverts("JobInvalidState", state=JobState.SUBMITTED):
        world.act(world.arbiter).resolve_dispute(job, False)
    world.act(world.client).dispute(job, h("x"))
    for outsider in (world.client, world.deployer, world.operator):
        with reverts("JobNotArbiter", caller=outsider.address):
            world.act(outsider).resolve_dispute(job, False)


def test_silent_arbiter_the_default_applies_after_the_dispute_deadline(world: World) -> None:
    """v1 exploit 7: a silent arbiter left a disputed job (escrow and collateral) stuck forever."""
    job = world.submitted_job()
    receipt = world.act(world.client).dispute(job, h("x"))
    resolve_by = world.mined_at(receipt) + DISPUTE_WINDOW

    def at_limit() -> None:
        with reverts("JobDisputeDeadlineNotPassed", jobId=job, resolveBy=resolve_by):
            world.act(world.stranger).finalize(job)
        _mined(world, world.act(world.arbiter).resolve_dispute(job, False), resolve_by)
        assert world.state(job) == JobState.REFUNDED

    def after() -> None:
        with reverts("JobDisputeDeadlinePassed", jobId=job, resolveBy=resolve_by):
            world.act(world.arbiter).resolve_dispute(job, False)
        receipt = _mined(world, world.act(world.stranger).finalize(job), resolve_by + 1)
        resolved = _events(world, world.suite.market, "DisputeResolved", receipt)[0]
        assert (resolved["workerWins"], resolved["byDefault"]) == (True, True)
        assert world.state(job) == JobState.SETTLED
        assert world.credits(world.operator.address) == PRICE + DISPUTE_BOND
        assert _stake_and_lock(world) == (STAKE, 0, 0)

    _sides(world, resolve_by, at_limit, after)


def test_silent_arbiter_on_a_failure_dispute(world: World) -> None:
    job = _claimed(world)
    resolve_by = world.mined_at(world.act(world.client).dispute(job, h("x"))) + DISPUTE_WINDOW

    def at_limit() -> None:
        with reverts("JobDisputeDeadlineNotPassed", resolveBy=resolve_by):
            world.act(world.stranger).finalize(job)
        _mined(world, world.act(world.arbiter).resolve_dispute(job, True), resolve_by)
        assert world.state(job) == JobState.FAILED

    def after() -> None:
        with reverts("JobDisputeDeadlinePassed", resolveBy=resolve_by):
            world.act(world.arbiter).resolve_dispute(job, False)
        world.act(world.stranger).finalize(job)
        assert world.state(job) == JobState.FAILED
        assert world.credits(world.client.address) == PRICE
        assert world.credits(world.operator.address) == DISPUTE_BOND

    _sides(world, resolve_by, at_limit, after)


def test_finalize_and_reclaim_refuse_other_states(world: World) -> None:
    job = world.post()
    with reverts("JobInvalidState", state=JobState.OPEN):
        world.act(world.stranger).finalize(job)
    with reverts("JobInvalidState", state=JobState.OPEN):
        world.act(world.client).reclaim(job)
    done = world.submitted_job()
    with reverts("JobInvalidState", state=JobState.SUBMITTED):
        world.act(world.client).reclaim(done)
    world.act(world.client).accept(done)
    for action in (world.act(world.stranger).finalize, world.act(world.stranger).reclaim, world.act(world.client).cancel):
        with reverts("JobInvalidState", state=JobState.SETTLED):
            action(done)


# ================================================================ v1 exploit 1: a client who owns the data


def test_client_owner_cannot_grant_late_to_get_the_worker_slashed(world: World) -> None:
    """v1 exploit 1: a client who was also the dataset owner granted just before the deadline, then reclaimed after
    it and pocketed the worker's collateral. v2: no grant once a full run window no longer fits, the run window
    counts from the grant, and the worker is never slashed before it ends."""
    client = world.owner  # the client owns the dataset
    job = world.post(client=client, deadline=world.now() + 2 * DAY, gpu_count=4)
    world.assign(job)
    terms = world.terms(job)
    latest = terms.latest_start
    assert terms.client == terms.dataset_owner == client.address

    def late_grant() -> None:  # one second after the latest fair start
        with reverts("JobTooLateToStart", jobId=job, latestStart=latest):
            world.grant(job)
        world.act(client).reclaim(job)  # the job expires, but nobody is slashed
        assert world.state(job) == JobState.EXPIRED
        assert world.credits(client.address) == PRICE
        assert _stake_and_lock(world) == (STAKE, 0, 0)

    def last_moment_grant() -> None:  # at the latest start: the worker still gets its whole run time
        _mined(world, world.grant(job), latest)
        due = world.job(job).due_at
        assert due == terms.deadline == latest + RUN_TIME
        world.at(due)
        with reverts("JobNotExpirable", jobId=job, expiresAfter=due):
            world.act(client).reclaim(job)
        att, signature = world.attest(job)
        _mined(world, world.act(world.operator).submit(job, att, signature), due)
        assert world.state(job) == JobState.SUBMITTED

    tester = world.w3.provider.ethereum_tester  # type: ignore[attr-defined]
    snapshot = tester.take_snapshot()
    world.at(latest)
    last_moment_grant()
    tester.revert_to_snapshot(snapshot)
    world.at(latest + 1)
    late_grant()
    # and a Running job granted in time cannot be reclaimed before its window ends
    job2 = world.post(client=client)
    world.assign(job2)
    world.grant(job2)
    world.advance(RUN_TIME - 10)
    with reverts("JobNotExpirable", jobId=job2):
        world.act(client).reclaim(job2)


# ================================================================ v1 exploit 5 and 8: funds and stake


# v1 exploit 5 (fee-on-transfer tokens booked at face value) needs a fee-taking token contract; the Python artifacts
# ship none (TestToken is plain), so the Foundry suite covers it (JobTokenShortfall). Nothing to run here.


def test_zero_collateral_is_refused_unless_meant(world: World) -> None:
    """v1 exploit 8: a market deployed with zero collateral let workers risk nothing without anyone saying so."""
    deployer = Sender(world.w3, world.deployer)
    with reverts("JobMarketZeroCollateral"):
        deploy_suite(deployer, DeployParams(arbiter=world.arbiter.address, collateral_per_gpu_wei=0))
    with reverts("JobMarketCollateralNotGwei", collateralPerGpu=10**9 + 1):
        deploy_suite(deployer, DeployParams(arbiter=world.arbiter.address, collateral_per_gpu_wei=10**9 + 1))
    deployment = deploy_suite(deployer, DeployParams(arbiter=world.arbiter.address, collateral_per_gpu_wei=0, allow_zero_collateral=True))
    from llmos_chain.chain.deploy import Suite

    assert Suite(world.w3, deployment).market.functions.collateralPerGpu().call() == 0


def test_a_worker_holding_jobs_cannot_withdraw_even_with_zero_collateral(world: World) -> None:
    """v1 exploit 8: v1 let a worker withdraw whenever nothing was locked, which with zero collateral was always."""
    zero = deploy_world(connect(), collateral_per_gpu_wei=0, allow_zero_collateral=True)
    zero.register_worker(stake=0)
    zero.register_dataset()
    job = zero.post(deadline=zero.now() + 30 * DAY)
    zero.assign(job)
    assert zero.worker_record().locked == 0 and zero.worker_record().active_jobs == 1
    workers = zero.suite.workers.functions
    zero.send(zero.operator, workers.requestExit(zero.worker))
    zero.advance(UNBONDING)
    with reverts("WorkerHoldsJobs", worker=zero.worker, activeJobs=1):
        zero.send(zero.operator, workers.withdrawStake(zero.worker))
    zero.act(zero.client).cancel(job)
    zero.send(zero.operator, workers.withdrawStake(zero.worker))
    assert zero.worker_record().status == 4


def test_re_registration_never_inherits_old_jobs(world: World) -> None:
    """v1 exploit 8: v1 keyed records by address, so a re-registered worker answered for the old record's jobs."""
    old_job = world.submitted_job()
    world.act(world.client).accept(old_job)
    workers = world.suite.workers.functions
    world.send(world.operator, workers.requestExit(world.worker))
    world.advance(UNBONDING)
    world.send(world.operator, workers.withdrawStake(world.worker))
    new_operator = world.accounts[7]
    world.register_worker(operator=new_operator, stake=STAKE // 2)
    assert world.worker_id() == 2
    view = world.job(old_job)
    assert (view.worker_id, view.worker) == (1, world.worker)  # the old job names the old registration
    old = world.worker_record(1)
    assert (old.operator, old.status, old.stake) == (world.operator.address, 4, 0)
    new_job = world.post()
    receipt = world.assign(new_job, operator=new_operator)
    assert _events(world, world.suite.market, "JobAssigned", receipt)[0]["workerId"] == 2
    world.grant(new_job)
    world.submit(new_job)
    world.act(world.client).accept(new_job)
    assert world.credits(new_operator.address) == PRICE  # paid to the new record's operator
    assert world.credits(world.operator.address) == PRICE  # only the old job's pay


# ================================================================ withdraw


def test_withdraw_pays_exactly_once(world: World) -> None:
    job = world.submitted_job()
    world.act(world.client).accept(job)
    before = world.balance(world.operator.address)
    receipt = world.act(world.operator).withdraw()
    event = _events(world, world.suite.market, "Withdrawn", receipt)[0]
    assert (event["token"], event["account"], event["amount"]) == (ZERO_ADDRESS, world.operator.address, PRICE)
    fee = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert world.balance(world.operator.address) == before + PRICE - fee
    assert world.credits(world.operator.address) == 0
    with reverts("JobNothingToWithdraw", token=ZERO_ADDRESS, account=world.operator.address):
        world.act(world.operator).withdraw()
    with reverts("JobNothingToWithdraw", token=ZERO_ADDRESS, account=world.stranger.address):
        world.act(world.stranger).withdraw()


def test_withdraw_erc20(world: World) -> None:
    token = world.fund_token()
    job = world.run_job(token=token.address, amount=123)
    world.submit(job)
    world.act(world.client).accept(job)
    world.act(world.operator).withdraw(token.address)
    assert token.functions.balanceOf(world.operator.address).call() == 123
    assert token.functions.balanceOf(world.suite.market.address).call() == 0
    with reverts("JobNothingToWithdraw", token=token.address):
        world.act(world.operator).withdraw(token.address)


def test_withdraw_to_a_contract_refusing_ether_keeps_the_credit(world: World) -> None:
    key = world.accounts[7]
    wallet, _ = Sender(world.w3, key).deploy("TestSmartWallet", key.address)
    owner = Sender(world.w3, key)
    market = world.suite.market
    owner.transact(wallet.functions.execute(market.address, PRICE, market.encode_abi("postJob", [world.request().as_tuple()])), value=PRICE)
    job = market.functions.jobCount().call()
    owner.transact(wallet.functions.execute(market.address, 0, market.encode_abi("cancel", [job, world.terms(job).as_tuple()])))
    owner.transact(wallet.functions.setAcceptsEther(False))
    with reverts("JobTransferFailed", to=wallet.address, amount=PRICE):
        owner.transact(wallet.functions.execute(market.address, 0, market.encode_abi("withdraw", [ZERO_ADDRESS])))
    assert world.credits(wallet.address) == PRICE


# ================================================================ multicall


def test_multicall_batches_as_the_caller_all_or_nothing(world: World) -> None:
    jobs = [_assigned(world) for _ in range(3)]
    terms = [world.terms(j) for j in jobs]
    owner = world.act(world.owner)
    bad = [("grantAccess", (j, t.as_tuple(), WRAPPED_KEY)) for j, t in zip(jobs, terms, strict=True)]
    bad[2] = ("grantAccess", (jobs[2], terms[2].as_tuple(), b""))
    with reverts("JobInvalidRequest", field="wrappedKey"):  # the inner error comes out unchanged
        owner.multicall(bad)
    assert [world.state(j) for j in jobs] == [JobState.ASSIGNED] * 3  # nothing applied
    with reverts("JobNotDatasetOwner", caller=world.stranger.address):  # msg.sender is the caller, not the market
        world.act(world.stranger).multicall([("grantAccess", (jobs[0], terms[0].as_tuple(), WRAPPED_KEY))])
    owner.multicall([("grantAccess", (j, t.as_tuple(), WRAPPED_KEY)) for j, t in zip(jobs, terms, strict=True)])
    assert [world.state(j) for j in jobs] == [JobState.RUNNING] * 3
    payable = {item["name"]: item["stateMutability"] for item in world.suite.market.abi if item["type"] == "function"}
    assert payable["multicall"] == "nonpayable"  # a batch can never reuse one msg.value
    assert payable["postJobs"] == "payable" and payable["dispute"] == "payable"


# ================================================================ admin


def test_arbiter_change(world: World) -> None:
    set_arbiter = world.suite.market.functions.setArbiter(world.stranger.address)
    with reverts("OwnableUnauthorizedAccount", account=world.stranger.address):
        world.send(world.stranger, set_arbiter)
    with reverts("JobMarketZeroAddress"):
        world.send(world.deployer, world.suite.market.functions.setArbiter(ZERO_ADDRESS))
    receipt = world.send(world.deployer, set_arbiter)
    assert _events(world, world.suite.market, "ArbiterChanged", receipt)[0]["arbiter"] == world.stranger.address
    assert world.suite.market.functions.arbiter().call() == world.stranger.address
    job = world.submitted_job()
    world.act(world.client).dispute(job, h("x"))
    with reverts("JobNotArbiter", caller=world.arbiter.address):
        world.act(world.arbiter).resolve_dispute(job, True)
    world.act(world.stranger).resolve_dispute(job, True)


def test_stray_ether_is_refused(world: World) -> None:
    market = world.suite.market.address
    tx = {"to": market, "value": 1, "gas": 100_000, "chainId": world.conn.chain_id, "gasPrice": world.w3.eth.gas_price,
          "nonce": world.w3.eth.get_transaction_count(world.stranger.address)}
    with reverts("JobUnexpectedEther", sender=world.stranger.address):
        Sender(world.w3, world.stranger).send_raw(tx, "receive")
    assert world.balance(market) == 0


def test_the_market_checks_its_wiring(world: World) -> None:
    deployer = Sender(world.w3, world.deployer)
    registry, _ = deployer.deploy("WorkerRegistry", world.stranger.address, UNBONDING)  # names another market
    args = (world.deployer.address, world.arbiter.address, registry.address, world.suite.datasets.address, COLLATERAL_PER_GPU,
            GRANT_TIMEOUT, DISPUTE_WINDOW, DISPUTE_BOND, False)
    with reverts("JobMarketMiswired", registryMarket=world.stranger.address):
        deployer.deploy("JobMarket", *args)
    zero_arbiter = (args[0], ZERO_ADDRESS, *args[2:])
    with reverts("JobMarketZeroAddress"):
        deployer.deploy("JobMarket", *zero_arbiter)
    with reverts("WorkerRegistryZeroAddress"):
        deployer.deploy("WorkerRegistry", ZERO_ADDRESS, UNBONDING)
    fn = world.suite.market.functions
    assert (fn.grantTimeout().call(), fn.disputeWindow().call(), fn.disputeBond().call(), fn.collateralPerGpu().call()) == (
        GRANT_TIMEOUT, DISPUTE_WINDOW, DISPUTE_BOND, COLLATERAL_PER_GPU)
    assert fn.workers().call() == world.suite.workers.address and fn.datasets().call() == world.suite.datasets.address
