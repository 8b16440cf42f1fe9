"""Combined values: a value is dropped only when it glues sibling values together; single concepts
whose names hold "and", "/", "+", "&", parentheses or units are kept; the doubtful are flagged."""

from __future__ import annotations

import pytest

from treesynth_core.prompts.labels import judge, judge_all, key, matches, pieces

MATH = ["Addition", "Subtraction", "Multiplication", "Division"]
TOPICS = ["Fractions", "Geometry", "Probability", "Percentages"]
PETS = ["Cat", "Dog", "Hamster"]

#: (value, its siblings, verdict). Siblings are the other values of the same split.
TABLE: list[tuple[str, list[str], str]] = [
    # single concepts: kept, not flagged
    ("C++", ["C", "Java", "Python"], "fine"),
    ("C#", ["C", "C++", "F#"], "fine"),
    ("File I/O", ["Strings", "Recursion", "Input handling"], "fine"),
    ("Speed (km/h)", ["Distance (km)", "Time (h)"], "fine"),
    ("Speed (km/h) and distance", TOPICS, "fine"),
    ("Geometry (area/perimeter)", ["Algebra", "Fractions"], "fine"),
    ("Ratios and proportions", TOPICS, "fine"),
    ("Cause and effect", ["Compare and contrast", "Sequence", "Main idea"], "fine"),
    ("Compare and contrast", ["Cause and effect", "Sequence", "Main idea"], "fine"),
    ("Supply and demand", ["Inflation", "Taxes", "Trade"], "fine"),
    ("Data and graphs", TOPICS, "fine"),
    ("Q&A", ["Essay", "Summary", "Dialogue"], "fine"),
    ("R&D", ["Sales", "Marketing", "Finance"], "fine"),
    ("AT&T", ["Verizon", "T-Mobile"], "fine"),
    ("Salt and pepper shakers", ["Teapots", "Cutlery", "Plates"], "fine"),
    ("Input/output", ["Loops", "Variables", "Functions"], "fine"),
    ("A+ grades", ["B grades", "C grades"], "fine"),
    ("Rock and roll", ["Jazz", "Classical", "Hip hop"], "fine"),
    ("Pros and cons", ["Definitions", "Examples"], "fine"),
    ("1/2 fractions", ["Thirds", "Quarters"], "fine"),
    ("Time and calendars", TOPICS, "fine"),
    ("Money and shopping", TOPICS, "fine"),
    ("Integers and negative numbers", TOPICS, "fine"),
    ("Measurement and unit conversion", TOPICS, "fine"),
    ("Patterns and sequences", TOPICS, "fine"),
    ("Trial and error", ["Working backwards", "Drawing a diagram"], "fine"),
    ("Question and answer", ["Essay", "Summary"], "fine"),
    ("Arts & crafts", ["Sports", "Music", "Cooking"], "fine"),
    ("Research & development", ["Sales", "Marketing"], "fine"),
    ("Black and white photography", ["Portraits", "Landscapes"], "fine"),
    ("Peanut butter and jelly", ["Pizza", "Tacos"], "fine"),
    ("Law and order", ["Economy", "Health care"], "fine"),
    ("Sine/cosine rules", ["Pythagorean theorem", "Similar triangles"], "fine"),
    ("Mean, median", ["Variance", "Range"], "fine"),
    ("Addition", MATH, "fine"),
    ("TCP/IP", ["HTTP", "DNS", "TLS"], "fine"),
    ("Read/write", ["Append"], "fine"),
    ("Mergers and acquisitions", ["Bankruptcy", "Contracts"], "fine"),
    ("Latitude/longitude and maps", ["Probability", "Photosynthesis"], "fine"),
    ("Trinidad and Tobago", ["Jamaica", "Cuba", "Barbados"], "fine"),
    # real glues of sibling values: dropped
    ("Addition/Subtraction", MATH, "combined"),
    ("Addition and subtraction", MATH, "combined"),
    ("addition & multiplication", MATH, "combined"),
    ("Multiplication + division", MATH, "combined"),
    ("Addition_and_Subtraction", MATH, "combined"),
    ("Addition or division", MATH, "combined"),
    ("Cats & dogs", PETS, "combined"),
    ("Cats and dogs", ["Cats", "Dogs", "Birds"], "combined"),
    ("Dog/Hamster", PETS, "combined"),
    ("Fractions, geometry and probability", TOPICS, "combined"),
    ("Addition and subtraction problems", ["Addition problems", "Subtraction problems"], "combined"),
    ("Problems with fractions or decimals", ["Problems with fractions", "Problems with decimals"], "combined"),
    ("Input/output", ["Input", "Output", "Storage"], "combined"),
    ("Probablity and geometry", TOPICS, "combined"),  # a near spelling still matches
    # doubtful: kept and flagged for a person
    ("Mammals and birds", ["Mammals", "Reptiles", "Fish"], "flagged"),
    ("Fractions and decimals", ["Fractions", "Geometry"], "flagged"),
    ("Apples, oranges and pears", ["Bananas", "Grapes"], "flagged"),
    ("Reading, writing, arithmetic", ["Science", "History"], "flagged"),
    ("Cats & rabbits", PETS, "flagged"),
]


def test_the_table_is_big_enough():
    assert len(TABLE) >= 40
    assert sum(1 for _, _, v in TABLE if v == "fine") >= 30


@pytest.mark.parametrize(("value", "siblings", "verdict"), TABLE, ids=[t[0] for t in TABLE])
def test_value_verdicts(value, siblings, verdict):
    judged = judge(value, siblings)
    assert judged.verdict == verdict, judged.reason
    assert bool(judged.reason) == (verdict != "fine")


def test_reasons_name_the_pieces_and_the_siblings():
    assert judge("Cats & dogs", PETS).reason == '"Cats & dogs" combines the values "Cat", "Dog"'
    flagged = judge("Mammals and birds", ["Mammals", "Fish"]).reason
    assert flagged == 'may combine "Mammals" and "birds" (overlaps "Mammals")'


def test_pieces_ignore_parentheses_and_short_parts():
    assert pieces("Speed (km/h)") == []
    assert pieces("C++") == [] and pieces("R&D") == [] and pieces("1/2 fractions") == []
    assert pieces("Addition / subtraction") == ["Addition", "subtraction"]
    assert pieces("buy_and_sell") == ["buy", "sell"]


def test_plural_and_near_spellings_match():
    assert key("Categories") == key("category") and key("Boxes") == key("box") and key("Cats") == "cat"
    assert matches("Subtractions", "subtraction") and matches("Probablity", "Probability")
    assert not matches("Python 2", "Python 3") and not matches("C", "C++") and not matches("C#", "C")


def test_a_value_is_judged_against_the_other_values_of_its_reply():
    judged = judge_all(["Addition", "Subtraction", "Addition and subtraction", "Ratios and proportions"])
    assert [v for v, j in judged.items() if j.verdict == "combined"] == ["Addition and subtraction"]
    assert judged["Ratios and proportions"].verdict == "fine"
    # new values of a coverage reply are judged against the values the split already has
    later = judge_all(["Cats and dogs", "Hamsters"], existing=["Cat", "Dog"])
    assert later["Cats and dogs"].verdict == "combined" and later["Hamsters"].verdict == "fine"
