"""Every name reviewtune derives: job names, run ids and S3 keys. One place, so nothing drifts."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from urllib.parse import unquote_plus

from reviewtune.core.errors import ConfigError
from reviewtune.core.formats import ACCEPTED_SUFFIXES  # noqa: F401  (re-exported; the formats live in formats.py)

INCOMING_PREFIX = "incoming/"
RUNS_PREFIX = "runs/"
REJECTED_PREFIX = "rejected/"
NAMELESS_DATASET = "(no name)"  # the dataset of an object keyed incoming/ itself (a DynamoDB key cannot be empty)
CODE_PREFIX = "code/"
SPLITS = ("train", "validation", "test")

TUNING_JOB_NAME_MAX = 32
TUNING_JOB_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,31}$")
# S3 user metadata of an object version made by `reviewtune runs retry`: the run it tunes again (retries.py).
RETRY_METADATA = "reviewtune-retry-of"
# S3's limit on an object's user-defined metadata: the UTF-8 bytes of every key and value together
S3_USER_METADATA_MAX_BYTES = 2048
JOB_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
PREFIX_PATTERN = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
PREFIX_MAX = 12
HASH_MAX = 16
EVALUATION_SUFFIX = "-eval"
# Where SageMaker writes a job's output (stream "<job name>/algo-1-<epoch>"); the local SageMaker writes there too.
TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
PROCESSING_LOG_GROUP = "/aws/sagemaker/ProcessingJobs"
LAMBDA_LOG_GROUP_PREFIX = "/aws/lambda/"  # a function's log group: the prefix and the function's name
REASON_SUFFIX = ".error.json"
S3_KEY_MAX_BYTES = 1024
# SageMaker's tag values and model-package metadata values: letters, digits, spaces and these, at most 256 characters
SAGEMAKER_TEXT_PUNCTUATION = "_.:/=+-@"
SAGEMAKER_TEXT_MAX = 256
SAGEMAKER_DESCRIPTION_MAX = 1024


def validate_prefix(prefix: str) -> str:
    """Check a job-name prefix: lower-case words joined by single dashes, at most 12 characters."""
    if len(prefix) > PREFIX_MAX or not PREFIX_PATTERN.match(prefix):
        raise ConfigError(
            f"JOB_NAME_PREFIX {prefix!r} must be 1-{PREFIX_MAX} characters of a-z and 0-9, words joined by single dashes"
        )
    return prefix


def sagemaker_text(value: str, limit: int = SAGEMAKER_TEXT_MAX) -> str:
    """``value`` as SageMaker accepts it in a tag value or a model package's metadata (the API's pattern
    ``[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*``): every other character ('(', ',', '#', '&', emoji...) becomes '_', then
    the first ``limit`` characters. A dataset named ``reviews (1).tsv`` is tagged ``reviews _1_.tsv``; the run
    record keeps the exact name."""
    cleaned = "".join(
        c if c in SAGEMAKER_TEXT_PUNCTUATION or unicodedata.category(c)[0] in "LNZ" else "_" for c in value
    )
    return cleaned[:limit]


def sagemaker_description(value: str, limit: int = SAGEMAKER_DESCRIPTION_MAX) -> str:
    """``value`` as SageMaker accepts it in a description (``[\\p{L}\\p{M}\\p{Z}\\p{S}\\p{N}\\p{P}]*``: no control or
    format characters, which S3 keys may hold, e.g. a tab or a newline; an approval's ``.*``, read as Java reads it,
    takes no line or paragraph separator either): each such character becomes a space."""
    return "".join(" " if _unwritable_in_description(unicodedata.category(c)) else c for c in value)[:limit]


def _unwritable_in_description(category: str) -> bool:
    return category[0] == "C" or category in ("Zl", "Zp")


def key_forms(key: str) -> list[str]:
    """The keys an event's key may stand for: the key as given, then its URL-decoded form when that differs.

    EventBridge "Object Created" events carry the key as stored (a '+' is a plus sign, a '%' a percent sign); S3's
    classic notifications carry it URL-encoded (spaces as '+').
    """
    decoded = unquote_plus(key)
    return [key] if decoded == key else [key, decoded]


def key_candidates(key: str) -> list[str]:
    """The forms of an event's key to look up in S3, in the order to try them (the decoded form only when the key as
    given does not exist). A form longer than S3 allows a key (S3_KEY_MAX_BYTES) cannot be stored, so it is not
    tried (S3 would answer it with 400, which reads as a refusal of an object that is there), unless no form fits.
    """
    forms = key_forms(key)
    return [form for form in forms if len(form.encode("utf-8", "surrogatepass")) <= S3_KEY_MAX_BYTES] or forms[:1]


def if_match(etag: str) -> str:
    """An ETag as S3's conditional headers take it (If-Match, x-amz-copy-source-if-match): in double quotes.

    Events carry it without quotes, S3's responses with them; either is accepted."""
    return '"' + etag.strip('"') + '"'


def object_version(version_id: str | None) -> str | None:
    """A version id as events, listings and answers give it, as reviewtune records it: None for an object written while
    the bucket had no versioning (S3 names its version "null" in listings and answers, and may in events)."""
    return None if version_id in (None, "", "null") else version_id


def object_identity(bucket: str, key: str, version_id: str | None, etag: str | None, upload: str | None = None) -> str:
    """A stable identity of one version of one object; duplicate events of that version share it. Without a version
    id (a bucket without versioning) the ETag stands for it, and ``upload`` (the S3 event's sequencer) tells apart a
    later upload of the same bytes at the same key from the first."""
    # the version id as recorded: the readers of events and listings take "null" for none (object_version)
    marker = version_id or (etag or "").strip('"')
    return f"{bucket}/{key}#{marker}" + (f"@{upload}" if upload else "")


def tuning_job_name(prefix: str, identity: str) -> str:
    """Deterministic, valid SageMaker tuning job name (<= 32 chars) for one dropped object version."""
    validate_prefix(prefix)
    digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()
    room = min(HASH_MAX, TUNING_JOB_NAME_MAX - len(prefix) - 1)
    name = f"{prefix}-{digest[:room]}"
    assert TUNING_JOB_NAME_PATTERN.match(name), name
    return name


def evaluation_job_name(run_id: str) -> str:
    return f"{run_id}{EVALUATION_SUFFIX}"


def run_id_of_evaluation_job(job_name: str) -> str:
    if not job_name.endswith(EVALUATION_SUFFIX):
        raise ValueError(f"{job_name!r} is not a reviewtune evaluation job name")
    return job_name[: -len(EVALUATION_SUFFIX)]


def is_accepted_key(key: str, size: int | None = None) -> bool:
    """Whether start_tuning gives this object an outcome: every object under incoming/ but folder markers (an empty
    object, or one of unknown size, whose key ends in ``/``: what "Create folder" makes). A key ending in ``/`` that
    holds bytes is an object like any other.

    The file's type is checked later (formats.file_format): any other type is rejected with a message, not ignored.
    """
    return key.startswith(INCOMING_PREFIX) and not (key.endswith("/") and not size)


def _incoming_path(key: str) -> str:
    return key[len(INCOMING_PREFIX) :] if key.startswith(INCOMING_PREFIX) else key


def dataset_name(key: str) -> str:
    """The dataset a key belongs to: its path below incoming/ (runs of one dataset are listed together), in Unicode
    NFC, so that one name typed with composed or decomposed accents (macOS writes file names decomposed) is one
    dataset: one history, one champion, warm start and duplicates across both spellings.

    The name is a DynamoDB key (the runs' ``by_dataset`` index, the ``champion#`` item), which can be neither empty
    nor over 2,048 bytes: an object keyed ``incoming/`` itself is dataset ``NAMELESS_DATASET``, and a path whose NFC
    form would pass S3_KEY_MAX_BYTES (a few characters grow under NFC, up to threefold) keeps the key's spelling."""
    path = _incoming_path(key)
    if not path:
        return NAMELESS_DATASET
    normal = normalize_dataset(path)
    return normal if len(normal.encode("utf-8")) <= S3_KEY_MAX_BYTES else path


def normalize_dataset(name: str) -> str:
    """A dataset name as the runs record it (NFC): for names typed by a person, such as ``--dataset``."""
    return unicodedata.normalize("NFC", name)


def key_spellings(path: str) -> list[str]:
    """The spellings keys give a path typed by a person, for S3 listings (whose prefixes match bytes): composed
    (NFC), then decomposed (NFD, as macOS writes file names) when that differs."""
    return list(dict.fromkeys(unicodedata.normalize(form, path) for form in ("NFC", "NFD")))


def in_scope(dataset: str, scope: str) -> bool:
    """Whether ``dataset`` is the dataset ``scope`` names, or lies in the folder it names (both NFC)."""
    folder = scope.strip("/")
    return dataset == scope or not folder or dataset.startswith(folder + "/")


def lambda_log_group(function_name: str) -> str:
    """Where Lambda (and the local runtime's router) writes a function's lines."""
    return LAMBDA_LOG_GROUP_PREFIX + function_name


def split_prefix(run_id: str, split: str) -> str:
    return f"{RUNS_PREFIX}{run_id}/data/{split}/"


def split_key(run_id: str, split: str) -> str:
    return f"{split_prefix(run_id, split)}{split}.tsv"


def models_prefix(run_id: str) -> str:
    return f"{RUNS_PREFIX}{run_id}/models/"


def evaluation_prefix(run_id: str) -> str:
    return f"{RUNS_PREFIX}{run_id}/evaluation/"


EVALUATION_FILE = "evaluation.json"  # the evaluation job's results, at the top of its output


def evaluation_key(run_id: str) -> str:
    """The run's evaluation.json, where the evaluation job's output is uploaded (its S3 output is the prefix)."""
    return f"{evaluation_prefix(run_id)}{EVALUATION_FILE}"


def trials_key(run_id: str) -> str:
    """Every trial of a run whose item keeps only the best (``trial_records``), beside the report's input."""
    return f"{evaluation_prefix(run_id)}input/trials.json"


def report_key(run_id: str) -> str:
    """The run's self-contained HTML report, written by the evaluation job into its output's report/ folder."""
    return f"{evaluation_prefix(run_id)}report/index.html"


def rejected_key(key: str) -> str:
    """Where the copy of a rejected file goes: as long as its key (``rejected/`` for ``incoming/``)."""
    return f"{REJECTED_PREFIX}{_incoming_path(key)}"  # spelled as the key was: the same length


def rejected_reason_key(key: str) -> str:
    """Where the reason of a rejected file goes: ``rejected/<dataset>.error.json``, or, when that would pass S3's
    1,024 bytes (a key of more than 1,013), the copy's key cut on a character boundary + ``~<hash of the key>``."""
    name = rejected_key(key) + REASON_SUFFIX
    if len(name.encode("utf-8")) <= S3_KEY_MAX_BYTES:
        return name
    tail = f"~{hashlib.sha256(key.encode('utf-8')).hexdigest()[:HASH_MAX]}{REASON_SUFFIX}"
    room = S3_KEY_MAX_BYTES - len(tail)
    return rejected_key(key).encode("utf-8")[:room].decode("utf-8", errors="ignore") + tail


def code_prefix(digest: str) -> str:
    return f"{CODE_PREFIX}{digest}/"


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def retry_of(metadata: dict[str, str] | None) -> str | None:
    """The run an object version retries (its ``RETRY_METADATA``), when that names a run id; None otherwise."""
    value = (metadata or {}).get(RETRY_METADATA)
    return value if isinstance(value, str) and TUNING_JOB_NAME_PATTERN.match(value) else None
