"""The officer-queries bench: `history` builds a national-scale history through the store path
(enrolment states, applications, decisions, re-decisions after enrolment fixes); `measure` times
the officers' questions on it; `run` holds the options, the database and the report."""
