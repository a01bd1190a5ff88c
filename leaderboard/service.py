"""The leaderboard as an HTTP service: submit over HTTP, read status and results, watch the board live.

    python -m leaderboard serve                          # SQLite ./leaderboard.db, one worker of its own, port 8000
    python -m leaderboard serve --workers 0 --db postgresql+psycopg://... --spool /shared/spool
    python -m leaderboard worker                         # more workers (any machine sharing database and spool)

A FastAPI app on uvicorn, built by `create_app` (tests make one per test). Requests and responses are pydantic
models, so FastAPI's OpenAPI schema (``/openapi.json``, browsable at ``/docs``) is the contract; the database
comes from the lifespan handler, the authenticated submitter from a dependency. Scoring never runs in a
request: ``POST /api/submissions`` streams the upload to disk under `leaderboard.upload`'s limits, runs the
checks that need no unpickling (`leaderboard.validate.inspect_submission`), and queues a job
(`leaderboard.jobs`) that a worker scores in the sandbox.

Endpoints (reads are public; submitting needs ``Authorization: Bearer <token>`` from
``python -m leaderboard token add NAME``, with a per-token rate limit and quota):

* ``POST /api/submissions``: multipart form with ``task``, optional ``name``, ``train_examples``,
  ``train_augmentations``, and either ``archive`` (.tar, .tar.gz or .zip of a checkpoint folder) or
  ``weights`` (model.safetensors) + ``meta`` (meta.json); answers 202 with the submission's status;
* ``GET /api/submissions/{id}``: queued / scoring / scored / rejected (with the one-line reason), the score;
* ``GET /api/results?task=NAME[@VERSION]``: the board's rows per task version and test data, as JSON;
* ``GET /``: the HTML board (`leaderboard.export.render_html`), which reloads itself when a score lands;
* ``GET /api/board/state``, ``GET /api/tasks``, ``GET /healthz``.

Every error is a 4xx with ``{"detail": "<one line>"}``; the tests fuzz every endpoint from the schema
(schemathesis) and require no 5xx.
"""

# no `from __future__ import annotations`: FastAPI reads the handlers' annotations, which name local dependencies

import shutil
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from leaderboard import jobs
from leaderboard.db import Board
from leaderboard.scoring import MAX_DECLARED, check_declared, split_of
from leaderboard.tasks import TASKS, TaskError, TaskSpec, get_task
from leaderboard.upload import FIELDS, FILES, UploadError, UploadLimits, receive_form, submission_folder
from leaderboard.validate import Limits, SubmissionError, inspect_submission, stage_submission

INCOMING = ".incoming"  # uploads being received, under the spool folder; never referenced by a job
STALE_INCOMING_S = 3600.0


@dataclass
class Settings:
    """One deployment of the service.

    Attributes:
        db: SQLite path or SQLAlchemy URL (default: ``$LEADERBOARD_DB`` or ``./leaderboard.db``).
        spool: the folder uploads wait in for a worker (default: `leaderboard.jobs.spool_dir`).
        limits: the file checks (`leaderboard.validate.Limits`).
        upload: bounds on a request (`leaderboard.upload.UploadLimits`).
        limit: score only the first N test examples (marked not reportable; for demos and tests).
        data: task name -> real test folder; other tasks are scored on their generated split.
        tasks: task names accepted for submission (default: every registered task).
        refresh_seconds: how often the HTML board checks for new scores.
        title: the board's title.
    """

    db: str | None = None
    spool: Path | None = None
    limits: Limits = field(default_factory=Limits)
    upload: UploadLimits = field(default_factory=UploadLimits)
    limit: int | None = None
    data: dict[str, Path] = field(default_factory=dict)
    tasks: tuple[str, ...] | None = None
    refresh_seconds: float = 5.0
    title: str = "attractor-suite leaderboard"


# ---- the contract --------------------------------------------------------------------------------------------
Status = Literal["queued", "scoring", "scored", "rejected"]


class Problem(BaseModel):
    """Every error answer: one line saying what was wrong."""

    detail: str


class ScoreRow(BaseModel):
    """One row of the board: a measured score, a baseline, or a paper's reported number (``kind``)."""

    id: int | None = Field(None, description="score id (None for reported numbers)")
    task: str
    task_version: int
    data: str = Field(description="generated:seed=S:n=N, or sha256:... of a real test split")
    split: Literal["generated", "real"] | None = Field(None, description="whether the scoring split is generated")
    name: str | None
    model: str | None
    size: str | None = None
    parameters: int | None
    exact_accuracy: float | None
    exact_accuracy_se: float | None = None
    cell_accuracy: float | None = None
    valid_path_rate: float | None = None
    steps: int | None = Field(None, description="supervision steps per example")
    halt_steps_mean: float | None = None
    solver_iters_mean: float | None = Field(None, description="solver iterations per step (Attractor)")
    network_evals_per_example: float | None = Field(
        None, description="test-time compute: supervision steps x network evaluations per step"
    )
    train_examples: int | None = Field(None, description="training-set size, as declared by the submitter")
    train_augmentations: int | None = Field(None, description="augmentations per example, as declared")
    examples_per_s: float | None = None
    device: str | None = None
    kind: str
    reportable: bool
    count: int | None = None
    sha256: str | None = None
    scored_at: str | None = None
    source: str | None = Field(None, description="where a reported number comes from")


class SubmissionStatus(BaseModel):
    """What became of one submission."""

    id: int
    task: str
    name: str
    submitter: str
    status: Status
    reason: str | None = Field(None, description="why it was rejected (one line)")
    score_id: int | None = None
    duplicate_of: int | None = Field(None, description="an earlier submission of the same file (scored once)")
    attempts: int = Field(0, description="times a worker claimed it")
    created_at: str
    score: ScoreRow | None = None


class ResultGroup(BaseModel):
    """The rows of one task version on one test data set, best first."""

    task: str
    task_version: int
    data: str
    rows: list[ScoreRow]


class Results(BaseModel):
    """The board as JSON."""

    generated_at: str
    groups: list[ResultGroup]


class BoardState(BaseModel):
    """Changes whenever a score is added or removed; also the queue's counts."""

    state: str
    queue: dict[str, int]


class TaskInfo(BaseModel):
    """A task version submissions may name."""

    key: str
    description: str
    test_size: int
    data: str
    max_steps: int
    max_solver_iter: int
    fingerprint: str


class Health(BaseModel):
    """The service is up and its database answers."""

    ok: bool


def _form_schema(tasks: list[str]) -> dict:
    """The multipart body of ``POST /api/submissions`` (parsed by `leaderboard.upload`, so described by hand)."""
    return {
        "type": "object",
        "required": ["task"],
        "additionalProperties": False,
        "properties": {
            "task": {"type": "string", "enum": tasks, "description": "task or task@version, e.g. sudoku6"},
            "name": {
                "type": "string",
                "minLength": 1,
                "maxLength": 200,
                "pattern": "^[^\\x00-\\x1f\\x7f]+$",
                "description": "name shown on the board (default: the token's)",
            },
            "train_examples": {"type": "integer", "minimum": 0, "maximum": MAX_DECLARED},
            "train_augmentations": {"type": "integer", "minimum": 0, "maximum": MAX_DECLARED},
            "archive": {"type": "string", "format": "binary", "description": ".tar, .tar.gz or .zip of the folder"},
            "weights": {"type": "string", "format": "binary", "description": "model.safetensors"},
            "meta": {"type": "string", "format": "binary", "description": "meta.json"},
        },
    }


assert set(_form_schema([])["properties"]) == set(FIELDS + FILES)


def _errors() -> dict:
    return {code: {"model": Problem} for code in (400, 401, 403, 404, 413, 415, 422, 429)}


# ---- the app -------------------------------------------------------------------------------------------------
def create_app(settings: Settings | None = None) -> FastAPI:
    """The service for ``settings`` (the database is opened by the lifespan handler, closed at shutdown)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await run_in_threadpool(_warm_up)
        board = Board(settings.db)
        spool = jobs.spool_dir(board, settings.spool)
        (spool / INCOMING).mkdir(parents=True, exist_ok=True)
        _clean_incoming(spool / INCOMING, STALE_INCOMING_S)
        app.state.board, app.state.spool = board, spool
        app.state.data = {t: jobs.data_choice(get_task(t), f) for t, f in settings.data.items()}
        app.state.page = (None, "")
        try:
            yield
        finally:
            board.close()

    app = FastAPI(
        title=settings.title,
        version="1",
        summary="Submit checkpoints for scoring; read the board.",
        lifespan=lifespan,
    )

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError):
        # one line, not FastAPI's list of error objects: "submission_id: Input should be a valid integer"
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        return JSONResponse({"detail": f"{where}: {first.get('msg', 'invalid')}"[:300]}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException):
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    bearer = HTTPBearer(auto_error=False, description="a submitter's token from `python -m leaderboard token add`")

    def get_board(request: Request) -> Board:
        return request.app.state.board

    def submitter(request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> dict:
        if creds is None:
            raise HTTPException(401, "missing API token: send Authorization: Bearer <token>",
                                headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
        token = jobs.authenticate(request.app.state.board, creds.credentials)
        if token is None:
            raise HTTPException(401, "unknown or revoked API token", headers={"WWW-Authenticate": "Bearer"})
        return token

    BoardDep = Annotated[Board, Depends(get_board)]
    accepted = [n for n in sorted(TASKS) if settings.tasks is None or n in settings.tasks]
    form = _form_schema([*accepted, *(s.key for n in accepted for s in TASKS[n].values())])

    @app.post(
        "/api/submissions",
        status_code=202,
        response_model=SubmissionStatus,
        responses=_errors(),
        summary="Submit a checkpoint",
        openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": form}}}},
    )
    async def post_submission(request: Request, token: Annotated[dict, Depends(submitter)]) -> SubmissionStatus:
        """Upload a checkpoint (an archive of its folder, or model.safetensors + meta.json) to be scored.

        The body is streamed to disk with the size limits enforced while reading; the archive is unpacked
        safely; the file checks that run no code decide at once (``rejected`` with a reason) and everything
        else is queued for a worker. The same file on the same task is scored once (``duplicate_of``).
        """
        board: Board = request.app.state.board
        spool: Path = request.app.state.spool
        try:
            await run_in_threadpool(jobs.check_allowance, board, token)
        except jobs.QuotaExceeded as e:
            raise HTTPException(403, str(e)) from None
        except jobs.RateLimited as e:
            raise HTTPException(429, str(e), headers={"Retry-After": "60"}) from None
        folder = spool / INCOMING / uuid.uuid4().hex
        folder.mkdir(parents=True)
        try:
            try:
                form = await receive_form(request.headers, request.stream(), folder, settings.upload)
            except UploadError as e:
                raise HTTPException(e.status, str(e)) from None
            except ClientDisconnect:  # nothing is recorded: the partial upload is removed below
                raise HTTPException(400, "the client went away before the upload was complete") from None
            fields = _check_fields(form.fields, token, settings)
            status = await run_in_threadpool(_accept, request.app, token, form, fields, folder, settings)
        except jobs.QuotaExceeded as e:
            raise HTTPException(403, str(e)) from None
        except jobs.RateLimited as e:
            raise HTTPException(429, str(e), headers={"Retry-After": "60"}) from None
        finally:  # (in a thread: removing folders takes milliseconds on some filesystems, off the event loop)
            await run_in_threadpool(shutil.rmtree, folder, ignore_errors=True)
        return status

    @app.get("/api/submissions/{submission_id}", response_model=SubmissionStatus, responses=_errors())
    def get_submission(board: BoardDep, submission_id: Annotated[int, PathParam(ge=1, le=2**62)]) -> SubmissionStatus:
        """A submission's status, its rejection reason or its score."""
        status = _status(board, submission_id)
        if status is None:
            raise HTTPException(404, f"no submission {submission_id}")
        return status

    @app.get("/api/results", response_model=Results, responses=_errors())
    def get_results(
        board: BoardDep,
        task: Annotated[str | None, Query(max_length=100, description="task or task@version")] = None,
        reported: Annotated[bool, Query(description="include the papers' reported numbers")] = True,
    ) -> Results:
        """The board's rows per task version and test data (measured, baselines, reported), best first."""
        from leaderboard.export import _now

        if task is not None:
            _task_or_404(task)
        groups: dict[tuple, list[ScoreRow]] = {}
        for r in _board_rows(board, settings, task, reported):
            groups.setdefault((r["task"], r["task_version"], r["data"]), []).append(_score_row(r))
        return Results(
            generated_at=_now(),
            groups=[ResultGroup(task=k[0], task_version=k[1], data=k[2], rows=v) for k, v in groups.items()],
        )

    @app.get("/api/board/state", response_model=BoardState)
    def get_state(board: BoardDep) -> BoardState:
        """What the live page polls: a value that changes when a score lands, and the queue's counts."""
        return BoardState(state=jobs.board_state(board), queue=jobs.queue_counts(board))

    @app.get("/api/tasks", response_model=list[TaskInfo])
    def get_tasks(request: Request) -> list[TaskInfo]:
        """The task versions a submission may name, and the test data each is scored on here."""
        out = []
        for name in sorted(TASKS):
            if settings.tasks is not None and name not in settings.tasks:
                continue
            for spec in TASKS[name].values():
                choice = request.app.state.data.get(name) or jobs.data_choice(spec, None)
                out.append(TaskInfo(key=spec.key, description=spec.description, test_size=choice.examples,
                                    data=choice.data_id, max_steps=spec.max_steps,
                                    max_solver_iter=spec.max_solver_iter, fingerprint=spec.fingerprint))  # fmt: skip
        return out

    @app.get("/", response_class=HTMLResponse, summary="The board as a web page")
    def get_page(request: Request, board: BoardDep) -> HTMLResponse:
        """The HTML board: sortable tables, the accuracy-vs-parameters plot, reported numbers marked.

        The page reloads itself when a new score lands.
        """
        from leaderboard.export import render_html

        state = jobs.board_state(board)
        cached_state, page = request.app.state.page
        if cached_state != state:  # the plots take a while to draw: only when the board changed
            page = render_html(_board_rows(board, settings), title=settings.title,
                               live=("/api/board/state", state, settings.refresh_seconds))  # fmt: skip
            request.app.state.page = (state, page)
        return HTMLResponse(page)

    @app.get("/healthz", response_model=Health)
    def health(board: BoardDep) -> Health:
        """Liveness: the database answers."""
        jobs.board_state(board)
        return Health(ok=True)

    return app


# ---- helpers -------------------------------------------------------------------------------------------------
def _board_rows(board: Board, settings: Settings, task: str | None = None, reported: bool = True) -> list[dict]:
    """The board's rows, and for every task this board accepts the papers' reported numbers even before a score.

    (`leaderboard.cli.collect_rows` attaches reported numbers to the groups that have scores, or to a task named.)
    """
    from leaderboard.cli import collect_rows

    if task is not None:
        return collect_rows(board, task, reported=reported)
    rows = collect_rows(board, None, reported=reported)
    if reported:
        have = {(r["task"], r["task_version"]) for r in rows}
        for name in sorted(TASKS):
            spec = get_task(name)
            if (
                (settings.tasks is None or name in settings.tasks)
                and spec.reported
                and (name, spec.version) not in have
            ):
                rows += [r for r in collect_rows(board, name, reported=True) if r["kind"] == "reported"]
    return rows


def _task_or_404(task: str) -> TaskSpec:
    try:
        return get_task(task)
    except TaskError as e:
        raise HTTPException(404, str(e)) from None


def _check_fields(fields: dict[str, str], token: dict, settings: Settings) -> dict:
    """The form's text fields, checked: a known task, a printable name, declared integers in range."""
    if "task" not in fields:
        raise HTTPException(422, "task: a task name is required (GET /api/tasks lists them)")
    try:
        spec = get_task(fields["task"].strip())
    except TaskError as e:
        raise HTTPException(422, f"task: {e}") from None
    if settings.tasks is not None and spec.name not in settings.tasks:
        raise HTTPException(422, f"task: {spec.name} is not scored on this board ({', '.join(settings.tasks)})")
    name = fields.get("name", "").strip() or token["name"]
    if len(name) > 200 or not name.isprintable():
        raise HTTPException(422, "name: must be 1 to 200 printable characters")
    declared = {}
    for key in ("train_examples", "train_augmentations"):
        raw = fields.get(key, "").strip()
        if raw:
            if not raw.isascii() or not raw.isdigit() or len(raw) > 13:
                raise HTTPException(422, f"{key}: must be an integer from 0 to {MAX_DECLARED:,}")
            declared[key] = int(raw)
    try:
        check_declared(declared.get("train_examples"), declared.get("train_augmentations"))
    except SubmissionError as e:
        raise HTTPException(422, str(e)) from None
    return {"spec": spec, "name": name, "declared": declared}


def _accept(app: FastAPI, token: dict, form, fields: dict, folder: Path, settings: Settings) -> SubmissionStatus:
    """Unpack, stage and check the upload (no unpickling), then record it: rejected, or queued (in a thread)."""
    board: Board = app.state.board
    spec: TaskSpec = fields["spec"]
    common = {"name": fields["name"], "task": spec, "upload_bytes": form.body_bytes}
    try:
        unpacked = submission_folder(form, folder / "unpacked", settings.upload)
        staged = stage_submission(unpacked, folder / "staged", settings.limits)
        pre = inspect_submission(staged, settings.limits, task=spec)
    except UploadError as e:
        raise HTTPException(e.status, str(e)) from None
    except SubmissionError as e:
        reason = str(e).replace(str(folder / "unpacked"), "upload").replace(str(folder / "staged"), "upload")
        upload_id, _ = jobs.record_upload(board, token, reason=reason, **common)
        return _status(board, upload_id)
    choice = app.state.data.get(spec.name) or jobs.data_choice(spec, None)
    upload_id, _ = jobs.record_upload(
        board, token, staged=staged, sha256=pre.sha256, data_id=choice.data_id,
        limit_n=jobs.limit_key(settings.limit, choice.examples), declared=fields["declared"],
        spool=app.state.spool, **common,
    )  # fmt: skip
    return _status(board, upload_id)


def _score_row(r: dict) -> ScoreRow:
    keys = ScoreRow.model_fields
    row = {k: r.get(k) for k in keys}
    if row["split"] is None and r.get("data"):
        row["split"] = split_of(r["data"])
    row["reportable"] = bool(r.get("reportable", True))
    return ScoreRow(**row)


def _status(board: Board, upload_id: int) -> SubmissionStatus | None:
    s = jobs.upload_status(board, upload_id)
    if s is None:
        return None
    score = None
    if s["score_id"] is not None:
        row = board.get(s["score_id"])
        if row is not None:
            score = _score_row({**row, "kind": row["kind"], "reportable": row["reportable"]})
    return SubmissionStatus(**s, score=score)


def _warm_up() -> None:
    """Check one tiny architecture at startup.

    The first model built on the ``meta`` device imports torch's reference kernels (~1.5 s), which would
    otherwise stall the first uploads.
    """
    import torch

    from leaderboard.validate import expected_tensors
    from recursive_models import build_model

    with torch.device("meta"):
        config = build_model("trm", "tiny", task="sudoku6").config
    expected_tensors(config)


def _clean_incoming(folder: Path, older_than_s: float) -> None:
    """Remove uploads left by a server that stopped mid-upload (no job ever points at them)."""
    cutoff = time.time() - older_than_s
    for entry in folder.iterdir():
        try:
            if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass
