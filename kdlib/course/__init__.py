"""The course's machinery: what builds the book's editions, grades students and publishes releases.

None of it is needed to distil a network; it is what an instructor and the course's maintainers
use. Each module is a command (``python -m kdlib.course.<module> --help``):

* :mod:`kdlib.course.checks` - the checkers of the chapters' exercises;
* :mod:`kdlib.course.editions` - the student edition (solutions removed) and the instructor's tables;
* :mod:`kdlib.course.assignments` - Otter-Grader assignments from the exercises, and local grading;
* :mod:`kdlib.course.instructor` - the instructor page's outline, study hours, plan and rubrics;
* :mod:`kdlib.course.release` - the release's version tag and the chapters' Colab install line.
"""
