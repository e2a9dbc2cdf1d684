"""Typed errors. Every message names the file and says what was expected, so a
user (or a daemon client) can act on it without a traceback."""
from __future__ import annotations

from pathlib import Path


class SbExportError(Exception):
    """Base class of every error sbexportd raises on purpose."""

    code = "error"  # stable machine-readable name (the daemon maps it to a JSON-RPC code)

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = str(path) if path is not None else None
        super().__init__(f"{self.path}: {message}" if self.path else message)


# --- reading: file -> archive -------------------------------------------------
class ModelFileError(SbExportError):
    """The file cannot be read as a Stable Baselines 2 save file."""
    code = "bad_model_file"


class ModelFileNotFound(ModelFileError):
    code = "file_not_found"


class NotAModelFile(ModelFileError):
    code = "not_a_model_file"


class TruncatedFile(ModelFileError):
    code = "truncated_file"


class MissingMember(ModelFileError):
    code = "missing_member"


class MemberTooLarge(ModelFileError):
    code = "member_too_large"


class UnsafeArchiveMember(ModelFileError):
    code = "unsafe_archive_member"


class ForbiddenPickleGlobal(ModelFileError):
    """The pickle asks to import or call something outside the allow-list."""
    code = "forbidden_pickle_global"


class ObjectArrayInParameters(ModelFileError):
    code = "object_array_in_parameters"


class VecNormalizeError(ModelFileError):
    code = "bad_vecnormalize_file"


class ZooConfigError(ModelFileError):
    """An rl-baselines-zoo config.yml that cannot be read safely."""
    code = "bad_zoo_config"


# --- understanding: archive -> spec -----------------------------------------
class UnsupportedModel(SbExportError):
    """The file is an SB2 model, but its algorithm or policy is not understood."""
    code = "unsupported_policy"


class UnknownAlgorithm(UnsupportedModel):
    code = "unknown_algorithm"


class UnknownPolicy(UnsupportedModel):
    code = "unknown_policy"


class InconsistentParameters(UnsupportedModel):
    """Parameter names or shapes do not fit the policy the file describes."""
    code = "inconsistent_parameters"


class InvalidSpec(UnsupportedModel):
    """A program that breaks the op contract (understand/ops.py): an unknown op or
    activation, a node of the wrong arity, a tensor read before it is written."""
    code = "invalid_spec"


# --- using a model ------------------------------------------------------------
class BadObservation(SbExportError):
    code = "bad_observation"


class InvalidArgument(SbExportError):
    """An argument outside what it accepts (the message names what it accepts): a
    request's parameter, a command-line option, a keyword of the Python API."""
    code = "invalid_argument"


class UnknownActivation(InvalidArgument):
    code = "unknown_activation"


class ObservationFileError(SbExportError):
    """A file of observations that cannot be read (format, syntax, not numbers)."""
    code = "bad_observation_file"


class BackendUnavailable(SbExportError):
    code = "backend_unavailable"


# --- exporting ---------------------------------------------------------------------
class ExportError(SbExportError):
    code = "export_failed"


class OutputExists(ExportError):
    code = "output_exists"


class ParityFailed(ExportError):
    """An export, loaded back in its own runtime, does not reproduce the reference."""
    code = "parity_failed"


class TargetUnavailable(ExportError):
    code = "target_unavailable"


class ExportFolderError(ExportError):
    """A folder given as an export that is not one `sbexportd export` wrote, or that
    its target's runtime cannot load."""
    code = "bad_export_folder"


class NotRepresentable(ExportError):
    """The target cannot represent this policy exactly (e.g. a dueling DQN in
    Stable-Baselines3). `why` says what it lacks, `closest` what would come nearest;
    nothing approximate is written in its place."""
    code = "not_representable"

    def __init__(self, message: str, path=None, *, why: str = "", closest: str = ""):
        self.why, self.closest = why, closest
        super().__init__(message, path)


class Cancelled(SbExportError):
    code = "cancelled"
