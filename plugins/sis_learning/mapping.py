"""The CSV mapping engine: one spec per Learning entity in ``include/mappings/``.

The source document gives the import as mapping tables ("PowerSchool Learning Values |
PowerSchool SIS API Attribute Path | PowerSchool SIS Database Column"): Student,
Users Levels, Teacher, Parent, Parent Child, Organizational and Course mappings. Each
table is a CSV file here, one row per Learning field, so changing a mapping is editing
a CSV, not code. Columns (see include/mappings/README.md):

- ``target``: the Learning field (a column of the learning_* table);
- ``source``: an API attribute path (``student/name/first_name``) or a SIS database
  column (``Students.First_Name``), or a column transform prepared (``section_name``);
  both spellings resolve to the staged column (``first_name``);
- ``constant``: a fixed value (``S``, ``1``);
- ``transform``: one of the named transforms in ``TRANSFORMS`` and its ``argument``;
- ``note``: free text for people.

Specs are checked when loaded (unknown source, placeholder or transform, a row with
neither source nor constant, a ``password`` target: an error naming the file and
line) and applied vectorised with pandas.
"""

from __future__ import annotations

import csv
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from sis_learning.exceptions import MappingSpecError

SPEC_COLUMNS = ("target", "source", "constant", "transform", "argument", "note")

# Learning's limit on a login (docs/validation-and-mapping.md "Lengths").
LOGIN_MAX_LENGTH = 100
# A generated login keeps at most this many characters of each name part, so the
# id suffix that makes it unique always fits in LOGIN_MAX_LENGTH.
GENERATED_LOGIN_NAME_PART_MAX = 40


# Every source a spec may name: (API attribute path, SIS database column, staged column).
# The first two are the spellings the source document's tables use; the third is the
# column of the stg_* table (or of the frame transform prepares) that holds the value.
SOURCE_FIELDS: tuple[tuple[str | None, str | None, str], ...] = (
    # schools -> organizations
    ("school/id", "Schools.DCID", "school_id"),
    ("school/name", "Schools.Name", "name"),
    # students -> users (S), user levels
    ("student/id", "Students.DCID", "student_id"),
    ("student/name/first_name", "Students.First_Name", "first_name"),
    ("student/name/last_name", "Students.Last_Name", "last_name"),
    ("student/student_username", "Students.Student_Web_ID", "student_username"),
    ("student/contact_info/email", "PSM_StudentContact.Email", "email"),
    ("student/school_enrollment/school/id", None, "school_id"),
    ("student/school_enrollment/school_id", None, "school_id"),
    ("student/school_enrollment/grade_level", "Students.Grade_Level", "grade_level"),
    # staff -> users (T)
    ("staff/id", "Teachers.DCID", "staff_id"),
    ("staff/name/first_name", "Teachers.First_Name", "first_name"),
    ("staff/name/last_name", "Teachers.Last_Name", "last_name"),
    ("staff/teacher_username", "Teachers.TeacherLoginId", "teacher_username"),
    ("staff/emails/work_email", "Users.Email_Addr", "email"),
    # the teacher's organization: the home school when it is selected, else the first
    # selected school affiliation (transform prepares it)
    ("staff/school_affiliation/school_id", None, "organization_school_id"),
    # guardians -> users (P), parent links
    (None, "Guardian.GuardianID", "guardian_id"),
    (None, "Guardian.FirstName", "first_name"),
    (None, "Guardian.LastName", "last_name"),
    (None, "PCAS_Account.Username", "portal_username"),
    (None, "PCAS_EmailContact.EmailAddress", "email"),
    # a parent's organization: the school of the first imported child (by student id)
    (None, "GuardianStudent.StudentsDCID", "student_id"),
    # sections (joined with their course) -> classes
    ("section/id", "Sections.DCID", "section_id"),
    ("section/section_number", "Sections.Section_Number", "section_number"),
    ("section/expression", "Sections.Expression", "expression"),
    ("section/term_id", "Terms.DCID", "term_id"),
    ("section/staff_id", "Teachers.DCID (lead teacher)", "staff_id"),
    ("section/school_id", None, "school_id"),
    ("course/course_name", "Courses.Course_Name", "course_name"),
    ("course/course_number", "Courses.Course_Number", "course_number"),
    # section enrollments -> rosters
    ("section_enrollment/section_id", None, "section_id"),
    ("section_enrollment/student_id", None, "student_id"),
    # section teachers (co-teachers) -> rosters
    ("section_teacher/section_id", "SectionTeacher.SectionID", "section_id"),
    ("section_teacher/staff_id", "SectionTeacher.TeacherID", "staff_id"),
)

# Columns transform prepares beside the staged ones; a spec may name them directly.
PREPARED_COLUMNS = frozenset({"organization_school_id", "first_child_id"})


def _build_source_index() -> dict[str, str]:
    index: dict[str, str] = {}
    for api_path, sis_column, column in SOURCE_FIELDS:
        for spelling in (api_path, sis_column):
            if spelling:
                index[spelling.strip().lower()] = column
    for _api, _sis, column in SOURCE_FIELDS:
        index.setdefault(column, column)
    for column in PREPARED_COLUMNS:
        index.setdefault(column, column)
    return index


SOURCE_INDEX = _build_source_index()


def resolve_source(source: str) -> str | None:
    """The staged column a source spelling names, or None when it is unknown."""
    return SOURCE_INDEX.get(source.strip().lower())


@dataclass
class MappingContext:
    """What a spec needs beyond the frame: district settings and run-wide state.

    ``taken_logins`` holds every login already used (lower case): the SIS usernames of
    all users of the run, every login Learning holds (the snapshot), then each login as it
    is assigned, so generated logins never collide with another user's. ``source_logins``
    is the run's SIS usernames alone: a login Learning holds for a user (the input row's
    ``kept_login``) is kept unless one of them now claims it. ``lookups`` maps a lookup name to a frame
    indexed by its key, for the ``lookup`` transform. No password value is ever here:
    ``imported_passwords_temporary`` is the district's flag only.
    """

    sso_domains: frozenset[str] = frozenset()
    autogenerate_usernames: bool = True
    imported_passwords_temporary: bool = True
    taken_logins: set[str] = field(default_factory=set)
    source_logins: frozenset[str] = frozenset()
    lookups: dict[str, pd.DataFrame] = field(default_factory=dict)


@dataclass(frozen=True)
class FieldMapping:
    """One row of a spec: how one Learning field is computed."""

    line: int
    target: str
    source: str | None  # as written in the CSV
    column: str | None  # the staged/prepared column it resolves to
    constant: str | None
    transform: str | None
    argument: str | None
    note: str | None


def _blank(series: pd.Series) -> pd.Series:
    return series.isna() | (series.astype("string").str.strip() == "")


def _text(series: pd.Series) -> pd.Series:
    """A column as nullable strings, empty text as missing (grade 9 -> "9").

    Values are not stripped: staged rows arrive with blanks already null (validate reads
    them so), and a million-row strip costs seconds.
    """
    text = series.astype("string")
    return text.mask(text.eq(""))


def _template_fields(template: str) -> list[str]:
    return [name for _literal, name, _spec, _conv in string.Formatter().parse(template) if name]


def _render_template(frame: pd.DataFrame, template: str, prepare: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """Fill ``{column}`` placeholders column-wise (vectorised string concatenation)."""
    result = pd.Series("", index=frame.index, dtype="string")
    for literal, name, _spec, _conv in string.Formatter().parse(template):
        if literal:
            result = result + literal
        if name:
            result = result + prepare(frame[name]).fillna("")
    return result


# Latin letters that Unicode decomposition does not reduce to ASCII.
LATIN_LETTERS_WITHOUT_DECOMPOSITION = str.maketrans(
    {
        "æ": "ae",
        "Æ": "AE",
        "ø": "o",
        "Ø": "O",
        "ß": "ss",
        "đ": "d",
        "Đ": "D",
        "ł": "l",
        "Ł": "L",
        "œ": "oe",
        "Œ": "OE",
        "þ": "th",
        "Þ": "TH",
        "ð": "d",
        "Ð": "D",
        "ı": "i",
    }
)


def _ascii_slug(series: pd.Series) -> pd.Series:
    """Lower-case ASCII letters and digits only: accents folded (é -> e, ø -> o), other scripts dropped."""
    folded = series.astype("string").fillna("").str.translate(LATIN_LETTERS_WITHOUT_DECOMPOSITION)
    folded = folded.str.normalize("NFKD")
    folded = folded.str.encode("ascii", errors="ignore").str.decode("ascii")
    return folded.str.lower().str.replace(r"[^a-z0-9]", "", regex=True).str.slice(0, GENERATED_LOGIN_NAME_PART_MAX)


def generate_logins(frame: pd.DataFrame, template: str, taken: set[str]) -> pd.Series:
    """Generated logins for every row of ``frame`` (the scheme of docs/validation-and-mapping.md).

    Each placeholder is folded to lower-case ASCII letters and digits, the template is
    filled, runs of separators collapse and leading/trailing ones are dropped (a name in
    a non-Latin script leaves just the id part, e.g. ``s1234``). A login already in
    ``taken`` or produced twice gets ``-2``, ``-3``, ... in row order, so the result is
    a function of the run's data: the same users get the same logins every run.
    ``taken`` is updated with every login assigned.
    """
    base = _render_template(frame, template, _ascii_slug)
    base = base.str.replace(r"([._-])[._-]+", r"\1", regex=True).str.strip("._-").str.slice(0, LOGIN_MAX_LENGTH)
    base = base.mask(base == "", "user")
    logins = base.copy()
    lowered = base.str.lower()
    # Membership row by row: ``isin`` would first copy the whole set (every login of the run).
    already_taken = pd.Series([login in taken for login in lowered.tolist()], index=lowered.index, dtype=bool)
    clashes = already_taken | lowered.duplicated(keep="first")
    taken.update(lowered[~clashes].tolist())
    # Collisions are rare (the id is in the default templates); resolve them one by one.
    for position in clashes[clashes].index:
        stem = base[position]
        suffix = 2
        while f"{stem}-{suffix}".lower()[:LOGIN_MAX_LENGTH] in taken:
            suffix += 1
        candidate = f"{stem[: LOGIN_MAX_LENGTH - len(str(suffix)) - 1]}-{suffix}"
        taken.add(candidate.lower())
        logins[position] = candidate
    return logins


def _transform_template(frame, mapping, context, output):
    return _render_template(frame, mapping.argument, _text)


def _transform_sso_email(frame, mapping, context, output):
    email = _text(frame[mapping.column])
    if not context.sso_domains:
        return pd.Series(pd.NA, index=frame.index, dtype="string")
    # "The part after the last @, lower-cased, is a district domain", in one pass per row
    # (a domain holds no @): the email, lower-cased, ends with "@" + the domain.
    endings = tuple(sorted(f"@{domain}" for domain in context.sso_domains))
    matches = email.str.lower().str.endswith(endings).fillna(False)
    return email.where(matches.astype(bool), pd.NA)


def _transform_default_password(frame, mapping, context, output):
    # The password itself is a secret reference load resolves; here only its flag.
    return pd.Series(context.imported_passwords_temporary, index=frame.index, dtype="boolean")


# An input column transform may prepare: the login Learning holds for the row's user.
KEPT_LOGIN_COLUMN = "kept_login"


def _transform_autogenerated_login(frame, mapping, context, output):
    username = _text(frame[mapping.column]).str.strip()
    username = username.mask(username.eq(""))
    login = username.copy()
    missing = username.isna()
    if "sso_email_address" in output:
        # Decision (documented): with no SIS username, the Google / Office 365 email is the login.
        sso = output["sso_email_address"]
        use_email = missing & sso.notna()
        login = login.mask(use_email, sso)
        missing = missing & ~use_email
    if missing.any() and KEPT_LOGIN_COLUMN in frame.columns:
        # A login Learning already holds for this user stays theirs (renamed, moved, back
        # from deactivation), unless the SIS now gives it to someone as their username.
        kept = _text(frame[KEPT_LOGIN_COLUMN])
        # Membership one value at a time: ``isin`` turned the district's ~470,000 SIS usernames
        # into an array on every call (0.4 s a call at L, however few rows were asked about).
        source = context.source_logins
        given_away = pd.Series(
            [isinstance(value, str) and value in source for value in kept.str.lower().tolist()],
            index=kept.index,
            dtype=bool,
        )
        keep = missing & kept.notna() & ~given_away
        login = login.mask(keep, kept)
        missing = missing & ~keep
    if missing.any() and context.autogenerate_usernames:
        login = login.mask(missing, generate_logins(frame.loc[missing], mapping.argument, context.taken_logins))
    context.taken_logins.update(login.dropna().str.lower().tolist())
    return login


def _transform_login_generated(frame, mapping, context, output):
    return _blank(frame[mapping.column]).astype("boolean")


def _transform_lookup(frame, mapping, context, output):
    lookup_name, lookup_column = mapping.argument.split(".", 1)
    try:
        table = context.lookups[lookup_name]
    except KeyError:
        raise MappingSpecError(
            f"line {mapping.line}: lookup {lookup_name!r} was not provided to the mapping context"
        ) from None
    return _text(frame[mapping.column]).map(table[lookup_column]).astype("string")


# name -> (function, needs a source column, argument description or None)
TRANSFORMS: dict[str, tuple[Callable, bool, str | None]] = {
    "template": (_transform_template, False, "a template of {column} placeholders"),
    "sso_email": (_transform_sso_email, True, None),
    "default_password": (_transform_default_password, False, None),
    "autogenerated_login": (_transform_autogenerated_login, True, "the template of a generated login"),
    "login_generated": (_transform_login_generated, True, None),
    "lookup": (_transform_lookup, True, "lookup_name.column"),
}

LOOKUP_ARGUMENT = re.compile(r"^[a-z_]+\.[a-z_]+$")


@dataclass(frozen=True)
class MappingSpec:
    """A loaded, checked mapping spec (one Learning entity)."""

    name: str
    path: Path
    fields: tuple[FieldMapping, ...]

    @property
    def targets(self) -> list[str]:
        return [mapping.target for mapping in self.fields]

    @property
    def source_columns(self) -> set[str]:
        """Every input column the spec reads (checked against the frame in ``apply``)."""
        columns = {mapping.column for mapping in self.fields if mapping.column}
        for mapping in self.fields:
            if mapping.transform in ("template", "autogenerated_login") and mapping.argument:
                columns.update(_template_fields(mapping.argument))
        return columns

    def apply(self, frame: pd.DataFrame, context: MappingContext | None = None) -> pd.DataFrame:
        """The Learning-shaped frame: one column per target, in spec order, same index as ``frame``."""
        context = context or MappingContext()
        missing = sorted(self.source_columns - set(frame.columns))
        if missing:
            raise MappingSpecError(f"{self.path}: the input rows have no column(s) {missing} that the spec reads")
        output: dict[str, pd.Series] = {}
        for mapping in self.fields:
            if mapping.transform:
                function = TRANSFORMS[mapping.transform][0]
                value = function(frame, mapping, context, output)
            elif mapping.constant is not None:
                value = pd.Series(mapping.constant, index=frame.index, dtype="string")
            else:
                value = _text(frame[mapping.column])
            output[mapping.target] = value
        return pd.DataFrame(output, index=frame.index)


def _error(path: Path, line: int, message: str) -> MappingSpecError:
    return MappingSpecError(f"{path}:{line}: {message}")


def _check_template(path: Path, line: int, argument: str | None, transform: str) -> str:
    if not argument:
        raise _error(path, line, f"transform {transform!r} needs a template in 'argument'")
    try:
        names = _template_fields(argument)
    except ValueError as problem:
        raise _error(path, line, f"template {argument!r} is malformed: {problem}") from None
    if not names:
        raise _error(path, line, f"template {argument!r} has no {{column}} placeholder")
    for name in names:
        # Placeholders name staged columns directly ({course_name}), not API paths.
        if resolve_source(name) != name:
            raise _error(
                path,
                line,
                f"template placeholder {{{name}}} is not a known staged column (see include/mappings/README.md)",
            )
    return argument


def load_spec(path: Path | str) -> MappingSpec:
    """Read and check one mapping CSV; any problem raises MappingSpecError naming file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as problem:
        raise MappingSpecError(f"{path}: cannot read the mapping spec: {problem}") from None
    reader = csv.DictReader(text.splitlines())
    header = [name.strip() for name in (reader.fieldnames or [])]
    if header[: len(SPEC_COLUMNS)] != list(SPEC_COLUMNS):
        raise _error(path, 1, f"header must be {','.join(SPEC_COLUMNS)} (found {','.join(header)})")
    fields: list[FieldMapping] = []
    seen_targets: dict[str, int] = {}
    for line_number, row in enumerate(reader, start=2):
        if None in row:
            raise _error(
                path, line_number, f"has more than {len(SPEC_COLUMNS)} columns (quote values containing commas)"
            )
        values = {key: (row.get(key) or "").strip() or None for key in SPEC_COLUMNS}
        target, source, constant = values["target"], values["source"], values["constant"]
        transform, argument = values["transform"], values["argument"]
        if target is None:
            raise _error(path, line_number, "'target' is empty")
        if target.lower() == "password":
            raise _error(
                path,
                line_number,
                "a spec never carries a password; map 'password_temporary' with the "
                "'default_password' transform (the password itself is a secret reference in the district config)",
            )
        if target in seen_targets:
            raise _error(path, line_number, f"target {target!r} is already mapped on line {seen_targets[target]}")
        seen_targets[target] = line_number
        column = None
        if source is not None:
            column = resolve_source(source)
            if column is None:
                raise _error(
                    path,
                    line_number,
                    f"unknown source {source!r}: use an API attribute path or SIS column "
                    "listed in include/mappings/README.md",
                )
        if transform is not None:
            if transform not in TRANSFORMS:
                raise _error(
                    path, line_number, f"unknown transform {transform!r} (known: {', '.join(sorted(TRANSFORMS))})"
                )
            _function, needs_source, _argument_help = TRANSFORMS[transform]
            if needs_source and column is None:
                raise _error(path, line_number, f"transform {transform!r} needs a 'source'")
            if transform in ("template", "autogenerated_login"):
                argument = _check_template(path, line_number, argument, transform)
            if transform == "lookup" and not (argument and LOOKUP_ARGUMENT.match(argument)):
                raise _error(path, line_number, "transform 'lookup' needs 'argument' as lookup_name.column")
            if constant is not None:
                raise _error(path, line_number, "give a constant or a transform, not both")
        elif constant is None and column is None:
            raise _error(path, line_number, f"target {target!r} has no source, constant or transform")
        elif constant is not None and column is not None:
            raise _error(path, line_number, "give a source or a constant, not both")
        fields.append(FieldMapping(line_number, target, source, column, constant, transform, argument, values["note"]))
    if not fields:
        raise _error(path, 1, "the spec maps no field")
    return MappingSpec(name=path.stem, path=path, fields=tuple(fields))
