"""JobMarket: every transition and every revert path, on the embedded chain."""

from __future__ import annotations

from eth_utils import keccak
from web3.logs import DISCARD

from llmos_chain.attestation import digest
from llmos_chain.chain.contracts import Sender
from llmos_chain.chain.market import JobState, WorkerParams, ZERO_ADDRESS
from tests.helpers import COLLATERAL_PER_GPU, GRANT_TIMEOUT, PRICE, STAKE, World, h, reverts


def _running(world: World, gpus: int = 1) -> int:
    job = world.post(gpu_count=gpus)
    world.assign(job)
    world.grant(job)
    return job


def _submitted(world: World) -> int:
    job = _running(world)
    world.submit(job)
    return job


def _token(world: World):  # noqa: ANN202
    token = world.suite.token
    assert token is not None
    client = Sender(world.w3, world.client)
    client.transact(token.functions.mint(world.client.address, 10**24))
    client.transact(token.functions.approve(world.suite.market.address, 2**256 - 1))
    return token


# ---------------------------------------------------------------- post / cancel


def test_post_eth_escrows_payment_and_emits_terms(world: World) -> None:
    before = world.balance(world.suite.market.address)
    job_id, receipt = world.act(world.client).post_job(world.request())
    job = world.job(job_id)
    assert (job.state, job.client, job.escrow, job.token) == (JobState.OPEN, world.client.address, PRICE, ZERO_ADDRESS)
    assert job.worker == ZERO_ADDRESS and job.dataset_id == world.dataset_id
    assert world.balance(world.suite.market.address) - before == PRICE
    event = world.suite.market.events.JobPosted().process_receipt(receipt, errors=DISCARD)[0]["args"]
    assert event["baseModelHash"] == keccak(text="base-model") and event["recipeURI"] == "file:///tmp/recipe.json"
    assert world.suite.market.functions.jobCount().call() == job_id


def test_post_erc20_pulls_tokens_and_interns_the_token(world: World) -> None:
    token = _token(world)
    job_id, receipt = world.act(world.client).post_job(world.request(token=token.address, amount=7 * 10**18))
    assert token.functions.balanceOf(world.suite.market.address).call() == 7 * 10**18
    assert world.job(job_id).token == token.address
    registered = world.suite.market.events.TokenRegistered().process_receipt(receipt, errors=DISCARD)
    assert registered[0]["args"]["tokenId"] == 1 == world.suite.market.functions.tokenId(token.address).call()
    _, second = world.act(world.client).post_job(world.request(token=token.address, amount=1))
    assert not world.suite.market.events.TokenRegistered().process_receipt(second, errors=DISCARD)


def test_post_rejects_bad_requests(world: World) -> None:
    client = world.act(world.client)
    for field, overrides in [
        ("amount", {"amount": 0}),
        ("gpuCount", {"gpu_count": 0}),
        ("deadline", {"deadline": world.now() - 1}),
        ("clientKey", {"client_key": b""}),
        ("datasetId", {"dataset_id": 0}),
    ]:
        with reverts("JobInvalidRequest", field=field):
            client.post_job(world.request(**overrides))


def test_post_rejects_wrong_payment(world: World) -> None:
    fn = world.suite.market.functions.postJob(world.request().as_tuple())
    with reverts("JobWrongPayment", expected=PRICE, received=PRICE - 1):
        Sender(world.w3, world.client).transact(fn, value=PRICE - 1)
    token = _token(world)
    fn = world.suite.market.functions.postJob(world.request(token=token.address).as_tuple())
    with reverts("JobWrongPayment", expected=0, received=1):
        Sender(world.w3, world.client).transact(fn, value=1)


def test_post_erc20_without_allowance_reverts_with_token_error(world: World) -> None:
    token = world.suite.token
    assert token is not None
    Sender(world.w3, world.stranger).transact(token.functions.mint(world.stranger.address, 10**18))
    with reverts("ERC20InsufficientAllowance"):
        world.act(world.stranger).post_job(world.request(token=token.address))


def test_cancel_refunds_open_job(world: World) -> None:
    job = world.post()
    receipt = world.suite.market.functions  # keep the attribute lookup warm for readability
    r = Sender(world.w3, world.client).transact(receipt.cancel(job))
    assert world.suite.market.events.JobCancelled().process_receipt(r, errors=DISCARD)[0]["args"]["refund"] == PRICE
    assert world.job(job).state == JobState.CANCELLED
    assert world.credits(world.client.address) == PRICE


def test_cancel_reverts(world: World) -> None:
    job = world.post()
    with reverts("JobNotClient", jobId=job, caller=world.stranger.address):
        Sender(world.w3, world.stranger).transact(world.suite.market.functions.cancel(job))
    with reverts("JobNotFound", jobId=999):
        Sender(world.w3, world.client).transact(world.suite.market.functions.cancel(999))
    world.assign(job)
    with reverts("JobInvalidState", jobId=job, state=JobState.ASSIGNED):
        Sender(world.w3, world.client).transact(world.suite.market.functions.cancel(job))


# ---------------------------------------------------------------- assign


def test_assign_locks_collateral(world: World) -> None:
    job = world.post(gpu_count=2)
    world.assign(job)
    view = world.job(job)
    assert (view.state, view.worker) == (JobState.ASSIGNED, world.worker)
    assert world.worker_record()[9] == 2 * COLLATERAL_PER_GPU  # locked


def test_assign_reverts(world: World) -> None:
    job = world.post()
    with reverts("WorkerNotOperator", worker=world.worker, caller=world.stranger.address):
        world.assign(job, operator=world.stranger)
    with reverts("WorkerNotRegistered", worker=world.stranger.address):
        world.assign(job, worker=world.stranger.address)
    big = world.post(gpu_count=9)
    with reverts("WorkerInsufficientCapabilities", worker=world.worker):
        world.assign(big)
    mem = world.post(gpu_mem_gib=81)
    with reverts("WorkerInsufficientCapabilities"):
        world.assign(mem)
    Sender(world.w3, world.operator).transact(world.suite.workers.functions.pause(world.worker))
    with reverts("WorkerNotActive", worker=world.worker, status=2):
        world.assign(job)
    Sender(world.w3, world.operator).transact(world.suite.workers.functions.unpause(world.worker))
    world.assign(job)
    with reverts("JobInvalidState", jobId=job, state=JobState.ASSIGNED):
        world.assign(job)


def test_assign_needs_free_stake(world: World) -> None:
    # 1 ETH stake, 0.01 ETH per GPU: 12 jobs of 8 GPUs lock 0.96 ETH; the 13th does not fit.
    jobs = [world.post(gpu_count=8) for _ in range(13)]
    for job in jobs[:12]:
        world.assign(job)
    with reverts("WorkerInsufficientFreeStake", available=STAKE - 12 * 8 * COLLATERAL_PER_GPU, needed=8 * COLLATERAL_PER_GPU):
        world.assign(jobs[12])


def test_assign_after_deadline_reverts(world: World) -> None:
    job = world.post(deadline=world.now() + 100)
    world.advance(200)
    with reverts("JobDeadlinePassed", jobId=job):
        world.assign(job)


# ---------------------------------------------------------------- grant / start / timeout


def test_grant_starts_the_assigned_job(world: World) -> None:
    job = world.post()
    world.assign(job)
    wrapped = b"\x07" * 80
    receipt = world.act(world.owner).grant(world.dataset_id, job, world.worker, world.now() + 3600, wrapped)
    assert world.job(job).state == JobState.RUNNING
    started = world.suite.market.events.JobStarted().process_receipt(receipt, errors=DISCARD)
    assert started[0]["args"]["worker"] == world.worker
    granted = world.suite.datasets.events.AccessGranted().process_receipt(receipt, errors=DISCARD)[0]["args"]
    assert granted["wrappedKey"] == wrapped and granted["jobId"] == job


def test_grant_for_another_worker_or_dataset_starts_nothing(world: World) -> None:
    job = world.post()
    world.assign(job)
    world.grant(job, worker=world.stranger.address)
    assert world.job(job).state == JobState.ASSIGNED
    other_id, _ = world.act(world.stranger).register_dataset(h("r"), h("c"), 1, "file:///x")
    world.act(world.stranger).grant(other_id, job, world.worker, world.now() + 3600, b"\x01" * 80)
    assert world.job(job).state == JobState.ASSIGNED


def test_start_job_uses_an_earlier_grant(world: World) -> None:
    job = world.post()
    world.grant(job)  # issued while the job is still open: the notice starts nothing
    assert world.job(job).state == JobState.OPEN
    with reverts("JobInvalidState", jobId=job, state=JobState.OPEN):
        world.act(world.stranger).start(job)
    world.assign(job)
    world.act(world.stranger).start(job)
    assert world.job(job).state == JobState.RUNNING


def test_start_job_without_grant_reverts(world: World) -> None:
    job = world.post()
    world.assign(job)
    with reverts("JobGrantMissing", jobId=job):
        world.act(world.stranger).start(job)


def test_only_the_dataset_registry_may_notify_grants(world: World) -> None:
    job = world.post()
    world.assign(job)
    fn = world.suite.market.functions.onAccessGranted(world.dataset_id, job, world.worker)
    with reverts("JobNotDatasetRegistry", caller=world.stranger.address):
        Sender(world.w3, world.stranger).transact(fn)


def test_grant_timeout_reopens_and_unlocks(world: World) -> None:
    job = world.post()
    world.assign(job)
    timeout = world.suite.market.functions.timeoutGrant(job)
    with reverts("JobGrantTimeoutNotReached", jobId=job):
        Sender(world.w3, world.stranger).transact(timeout)
    world.advance(GRANT_TIMEOUT + 1)
    receipt = Sender(world.w3, world.stranger).transact(timeout)
    assert world.suite.market.events.JobReopened().process_receipt(receipt, errors=DISCARD)[0]["args"]["worker"] == world.worker
    view = world.job(job)
    assert (view.state, view.worker) == (JobState.OPEN, ZERO_ADDRESS)
    assert world.worker_record()[9] == 0
    world.assign(job)  # assignable again
    assert world.job(job).state == JobState.ASSIGNED


# ---------------------------------------------------------------- submit


def test_submit_records_the_attestation_digest(world: World) -> None:
    job = _running(world)
    att = world.attestation(job)
    receipt = world.act(world.stranger).submit(job, att, world.sign(att))  # anyone may relay
    event = world.suite.market.events.ResultSubmitted().process_receipt(receipt, errors=DISCARD)[0]["args"]
    assert event["digest"] == digest(att, world.conn.chain_id, world.suite.market.address)
    assert event["digest"] == world.suite.market.functions.attestationDigest(att.as_tuple()).call()
    assert event["outputHash"] == att.output_hash
    assert world.job(job).state == JobState.SUBMITTED


def test_submit_rejects_mismatched_attestations(world: World) -> None:
    job = _running(world)
    operator = world.act(world.operator)
    cases = [
        ("jobId", world.attestation(job, job_id=job + 1)),
        ("worker", world.attestation(job, worker=world.stranger.address)),
        ("time", world.attestation(job, start_time=world.now(), end_time=world.now() + 3600)),
    ]
    for field, att in cases:
        with reverts("JobAttestationMismatch", jobId=job, field=field):
            operator.submit(job, att, world.sign(att))


def test_submit_rejects_foreign_signatures(world: World) -> None:
    job = _running(world)
    operator = world.act(world.operator)
    att = world.attestation(job)
    other_market = world.suite.datasets.address
    bad = [
        world.sign(att, key=world.stranger),  # not the worker's signer
        world.sign(att, chain_id=world.conn.chain_id + 1),  # another chain
        world.sign(att, market=other_market),  # another contract
        world.sign(world.attestation(job, output_hash=h("other"))),  # one field changed after signing
        b"\x00" * 65,
        b"",
    ]
    for signature in bad:
        with reverts("JobInvalidAttestationSignature", jobId=job, signer=world.worker):
            operator.submit(job, att, signature)
    assert world.job(job).state == JobState.RUNNING


def test_submit_reverts_outside_running_or_after_deadline(world: World) -> None:
    job = world.post(deadline=world.now() + 600)
    world.assign(job)
    att = world.attestation(job)
    with reverts("JobInvalidState", jobId=job, state=JobState.ASSIGNED):
        world.act(world.operator).submit(job, att, world.sign(att))
    world.grant(job)
    world.advance(601)
    att = world.attestation(job)
    with reverts("JobDeadlinePassed", jobId=job):
        world.act(world.operator).submit(job, att, world.sign(att))


def test_submit_accepts_an_eip1271_signer(world: World) -> None:
    key = world.accounts[7]
    wallet, _ = Sender(world.w3, key).deploy("TestSmartWallet", key.address)
    contract_worker = world.accounts[8].address
    params = WorkerParams(wallet.address, "L4", 1, 24, 10**14, b"\x02" * 32)
    world.act(world.operator).register_worker(contract_worker, params, STAKE)
    job = world.post()
    world.assign(job, worker=contract_worker)
    world.grant(job, worker=contract_worker)
    att = world.attestation(job, worker=contract_worker)
    with reverts("JobInvalidAttestationSignature", signer=wallet.address):
        world.act(world.operator).submit(job, att, world.sign(att, key=world.stranger))
    world.act(world.operator).submit(job, att, world.sign(att, key=key))
    assert world.job(job).state == JobState.SUBMITTED


# ---------------------------------------------------------------- failure report


def test_failure_report_refunds_without_slash(world: World) -> None:
    job = _running(world)
    stake_before = world.worker_record()[8]
    fn = world.suite.market.functions.reportFailure(job, 2, h("content root mismatch"))
    receipt = Sender(world.w3, world.operator).transact(fn)
    args = world.suite.market.events.FailureReported().process_receipt(receipt, errors=DISCARD)[0]["args"]
    assert (args["reason"], args["detailsHash"]) == (2, h("content root mismatch"))
    assert world.job(job).state == JobState.FAILED
    assert world.credits(world.client.address) == PRICE
    record = world.worker_record()
    assert (record[8], record[9]) == (stake_before, 0)


def test_failure_report_by_signer_while_assigned(world: World) -> None:
    job = world.post()
    world.assign(job)
    Sender(world.w3, world.worker_key).transact(world.suite.market.functions.reportFailure(job, 1, h("x")))
    assert world.job(job).state == JobState.FAILED


def test_failure_report_reverts(world: World) -> None:
    job = world.post()
    fn = world.suite.market.functions.reportFailure(job, 1, h("x"))
    with reverts("JobInvalidState", state=JobState.OPEN):
        Sender(world.w3, world.operator).transact(fn)
    world.assign(job)
    with reverts("JobNotWorkerAuthority", jobId=job, caller=world.stranger.address):
        Sender(world.w3, world.stranger).transact(fn)


# ---------------------------------------------------------------- accept / dispute / finalize


def test_accept_pays_the_operator_and_unlocks(world: World) -> None:
    job = _submitted(world)
    receipt = world.act(world.client).accept(job)
    settled = world.suite.market.events.JobSettled().process_receipt(receipt, errors=DISCARD)[0]["args"]
    assert (settled["payee"], settled["amount"]) == (world.operator.address, PRICE)
    assert world.job(job).state == JobState.SETTLED
    assert world.credits(world.operator.address) == PRICE
    assert world.worker_record()[9] == 0


def test_accept_reverts(world: World) -> None:
    job = _running(world)
    with reverts("JobInvalidState", state=JobState.RUNNING):
        world.act(world.client).accept(job)
    world.submit(job)
    with reverts("JobNotClient", caller=world.operator.address):
        world.act(world.operator).accept(job)


def test_dispute_within_window_then_arbiter_refunds_and_slashes(world: World) -> None:
    job = _submitted(world)
    stake = world.worker_record()[8]
    Sender(world.w3, world.client).transact(world.suite.market.functions.dispute(job, h("bad model")))
    assert world.job(job).state == JobState.DISPUTED
    receipt = Sender(world.w3, world.arbiter).transact(world.suite.market.functions.resolveDispute(job, False))
    refund = world.suite.market.events.JobRefunded().process_receipt(receipt, errors=DISCARD)[0]["args"]
    assert (refund["amount"], refund["slashed"]) == (PRICE, COLLATERAL_PER_GPU)
    assert world.job(job).state == JobState.REFUNDED
    assert world.credits(world.client.address) == PRICE + COLLATERAL_PER_GPU
    record = world.worker_record()
    assert (record[8], record[9]) == (stake - COLLATERAL_PER_GPU, 0)
    slashed = world.suite.workers.events.WorkerSlashed().process_receipt(receipt, errors=DISCARD)[0]["args"]
    assert (slashed["jobId"], slashed["amount"]) == (job, COLLATERAL_PER_GPU)


def test_arbiter_may_side_with_the_worker(world: World) -> None:
    job = _submitted(world)
    Sender(world.w3, world.client).transact(world.suite.market.functions.dispute(job, h("meh")))
    Sender(world.w3, world.arbiter).transact(world.suite.market.functions.resolveDispute(job, True))
    assert world.job(job).state == JobState.SETTLED
    assert world.credits(world.operator.address) == PRICE


def test_dispute_and_resolution_reverts(world: World) -> None:
    job = _submitted(world)
    dispute = world.suite.market.functions.dispute(job, h("x"))
    resolve = world.suite.market.functions.resolveDispute(job, False)
    with reverts("JobNotArbiter", caller=world.client.address):
        Sender(world.w3, world.client).transact(resolve)
    with reverts("JobInvalidState", state=JobState.SUBMITTED):
        Sender(world.w3, world.arbiter).transact(resolve)
    with reverts("JobNotClient"):
        Sender(world.w3, world.stranger).transact(dispute)
    world.advance(3601)
    with reverts("JobChallengeWindowClosed", jobId=job):
        Sender(world.w3, world.client).transact(dispute)


def test_finalize_after_the_window(world: World) -> None:
    job = _submitted(world)
    finalize = world.suite.market.functions.finalize(job)
    with reverts("JobChallengeWindowOpen", jobId=job):
        Sender(world.w3, world.stranger).transact(finalize)
    world.advance(3601)
    Sender(world.w3, world.stranger).transact(finalize)
    assert world.job(job).state == JobState.SETTLED
    assert world.credits(world.operator.address) == PRICE


# ---------------------------------------------------------------- reclaim


def test_reclaim_running_job_after_deadline_slashes(world: World) -> None:
    job = world.post(deadline=world.now() + 600, gpu_count=3)
    world.assign(job)
    world.grant(job)
    reclaim = world.suite.market.functions.reclaim(job)
    with reverts("JobDeadlineNotPassed", jobId=job):
        Sender(world.w3, world.client).transact(reclaim)
    world.advance(601)
    Sender(world.w3, world.stranger).transact(reclaim)
    assert world.job(job).state == JobState.EXPIRED
    assert world.credits(world.client.address) == PRICE + 3 * COLLATERAL_PER_GPU


def test_reclaim_assigned_job_after_deadline_does_not_slash(world: World) -> None:
    job = world.post(deadline=world.now() + 600)
    world.assign(job)
    world.advance(601)
    Sender(world.w3, world.client).transact(world.suite.market.functions.reclaim(job))
    assert world.job(job).state == JobState.EXPIRED
    assert world.credits(world.client.address) == PRICE
    record = world.worker_record()
    assert (record[8], record[9]) == (STAKE, 0)


def test_reclaim_of_open_job_reverts(world: World) -> None:
    job = world.post()
    with reverts("JobInvalidState", state=JobState.OPEN):
        Sender(world.w3, world.client).transact(world.suite.market.functions.reclaim(job))


# ---------------------------------------------------------------- withdraw


def test_withdraw_pays_exactly_once(world: World) -> None:
    job = _submitted(world)
    world.act(world.client).accept(job)
    before = world.balance(world.operator.address)
    receipt = world.act(world.operator).withdraw()
    fee = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert world.balance(world.operator.address) == before + PRICE - fee
    assert world.credits(world.operator.address) == 0
    with reverts("JobNothingToWithdraw", token=ZERO_ADDRESS, account=world.operator.address):
        world.act(world.operator).withdraw()


def test_withdraw_erc20(world: World) -> None:
    token = _token(world)
    job = world.post(token=token.address, amount=123)
    world.assign(job)
    world.grant(job)
    world.submit(job)
    world.act(world.client).accept(job)
    world.act(world.operator).withdraw(token.address)
    assert token.functions.balanceOf(world.operator.address).call() == 123
    assert token.functions.balanceOf(world.suite.market.address).call() == 0


def test_withdraw_to_a_contract_refusing_ether_reverts_and_keeps_the_credit(world: World) -> None:
    key = world.accounts[7]
    wallet, _ = Sender(world.w3, key).deploy("TestSmartWallet", key.address)
    owner = Sender(world.w3, key)
    owner.transact(wallet.functions.execute(world.suite.market.address, PRICE, world.suite.market.encode_abi("postJob", [world.request().as_tuple()])), value=PRICE)
    job = world.suite.market.functions.jobCount().call()
    owner.transact(wallet.functions.execute(world.suite.market.address, 0, world.suite.market.encode_abi("cancel", [job])))
    owner.transact(wallet.functions.setAcceptsEther(False))
    with reverts("JobTransferFailed", to=wallet.address, amount=PRICE):
        owner.transact(wallet.functions.execute(world.suite.market.address, 0, world.suite.market.encode_abi("withdraw", [ZERO_ADDRESS])))
    assert world.credits(wallet.address) == PRICE


# ---------------------------------------------------------------- admin


def test_arbiter_change_and_stray_ether(world: World) -> None:
    set_arbiter = world.suite.market.functions.setArbiter(world.stranger.address)
    with reverts("OwnableUnauthorizedAccount", account=world.stranger.address):
        Sender(world.w3, world.stranger).transact(set_arbiter)
    with reverts("JobMarketZeroAddress"):
        Sender(world.w3, world.deployer).transact(world.suite.market.functions.setArbiter(ZERO_ADDRESS))
    Sender(world.w3, world.deployer).transact(set_arbiter)
    assert world.suite.market.functions.arbiter().call() == world.stranger.address
    tx = {"to": world.suite.market.address, "value": 1, "gas": 100_000, "nonce": world.w3.eth.get_transaction_count(world.stranger.address), "chainId": world.conn.chain_id, "gasPrice": world.w3.eth.gas_price}
    signed = world.stranger.sign_transaction(tx)
    from llmos_chain.errors import ContractRevertError
    try:
        receipt = world.w3.eth.wait_for_transaction_receipt(world.w3.eth.send_raw_transaction(signed.raw_transaction))
        assert receipt["status"] == 0
    except Exception as exc:  # eth-tester raises on a reverted send
        assert not isinstance(exc, ContractRevertError)
    assert world.balance(world.suite.market.address) == 0
