"""nbgrader's configuration for this course (read by every ``nbgrader`` command run here).

The course folder nbgrader works in is ``course/`` (not in git; ``make student`` creates it):

    course/source/<chapter>/<chapter>.ipynb      the chapters, copied from chapters/
    course/release/<chapter>/<chapter>.ipynb     the student versions (generate_assignment)
    course/submitted/<student>/<chapter>/...     what students hand in (collect, or a folder)
    course/autograded/, course/feedback/         autograde and generate_feedback write here
    course/gradebook.db                          the gradebook (sqlite)

One assignment per chapter, named after the chapter's file (``02_attention_with_loops``). The
chapters' solution and check cells carry nbgrader metadata (tools/nbgrader_cells.py), and four
small plugins (tools/nbgrader_plugins.py) keep the exercise hints, remove the website's solution
dropdowns, turn the book's MyST markup into plain Markdown, and make failing checks fail their
cell while grading.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "tools"))

from nbgrader.converters import Autograde, GenerateAssignment  # noqa: E402
from nbgrader.preprocessors import ClearSolutions, Execute  # noqa: E402
from nbgrader_plugins import (  # noqa: E402
    GradingExecute,
    HintedClearSolutions,
    PlainMarkdown,
    RemoveWebSolutions,
)

c = get_config()  # noqa: F821 (nbgrader provides it)

c.CourseDirectory.course_id = "selfattention"
c.CourseDirectory.root = str(HERE / "course")
c.CourseDirectory.db_url = f"sqlite:///{HERE / 'course' / 'gradebook.db'}"


def _default(cls, name):
    return list(getattr(cls(), name))


# nbgrader's own preprocessor lists, with the course's plugins swapped in.
c.GenerateAssignment.preprocessors = [RemoveWebSolutions, PlainMarkdown] + [
    HintedClearSolutions if p is ClearSolutions else p for p in _default(GenerateAssignment, "preprocessors")
]
c.Autograde.autograde_preprocessors = [
    GradingExecute if p is Execute else p for p in _default(Autograde, "autograde_preprocessors")
]
# A chapter's slowest cell (training in chapter 10) takes well under a minute on 2 cores.
c.Execute.timeout = 120
# Students are created in the gradebook when their first submission is graded.
c.Autograde.create_student = True
