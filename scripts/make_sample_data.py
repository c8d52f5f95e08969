#!/usr/bin/env python3
"""Generate clintune's SYNTHETIC sample data in data/ (deterministic, seeded).

None of this is real patient data: every text is assembled from templates and
word lists below. The files exist so that the tiny smoke configs and the tests
have something small, fast and learnable to train on, in each file format
clintune reads (csv, CoNLL, brat), in the layouts of the notebooks clintune grew
from: the diagnosis CSV's integer labels (0 invalid, 1 valid), the seriousness
CSV's ``ID, Seriousness, Narrative`` columns.

    python scripts/make_sample_data.py            # rewrite data/
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEED = 13

# -- binary diagnosis verification -------------------------------------------------

CONDITIONS = {
    "community-acquired pneumonia": ["fever", "productive cough", "crackles on auscultation", "pleuritic chest pain"],
    "acute myocardial infarction": ["crushing chest pain", "diaphoresis", "st elevation", "pain radiating to the left arm"],
    "acute appendicitis": ["right lower quadrant pain", "rebound tenderness", "nausea", "low grade fever"],
    "migraine": ["unilateral throbbing headache", "photophobia", "visual aura", "nausea"],
    "type 2 diabetes mellitus": ["polyuria", "polydipsia", "elevated hba1c", "fatigue"],
    "urinary tract infection": ["dysuria", "urinary frequency", "suprapubic pain", "positive nitrites"],
}
NOTES = [
    "vital signs recorded at triage",
    "history obtained from the patient",
    "no known drug allergies",
    "seen in the emergency department",
    "referred by the primary care physician",
]


def diagnosis_rows(rng: random.Random, n: int) -> list[dict[str, str]]:
    rows = []
    names = list(CONDITIONS)
    for _ in range(n):
        true_condition = rng.choice(names)
        symptoms = rng.sample(CONDITIONS[true_condition], 3)
        valid = rng.random() < 0.4
        proposed = true_condition if valid else rng.choice([c for c in names if c != true_condition])
        text = (
            f"Patient: {rng.randint(18, 90)}-year-old {rng.choice(['male', 'female'])}. "
            f"Symptoms: {', '.join(symptoms)}. Notes: {rng.choice(NOTES)}. "
            f"Proposed diagnosis: {proposed}."
        )
        rows.append({"text": text, "label": "1" if valid else "0"})  # the notebook's layout: 1 valid, 0 invalid
    return rows


# -- multiclass section headers (MTS-Dialog shape) ----------------------------------

SECTIONS = {
    "GENHX": (
        ["What brings you in today?", "How long has this been going on?", "When did the pain start?"],
        ["I have had a cough for two weeks.", "My knee started hurting three days ago.", "The headache began last night."],
    ),
    "FAM/SOCHX": (
        ["Do you smoke or drink?", "Does anyone in your family have heart disease?", "What do you do for work?"],
        ["I smoke half a pack a day.", "My father had diabetes and my mother had a stroke.", "I work as a teacher and live with my wife."],
    ),
    "MEDICATIONS": (
        ["Are you taking any medicines?", "What dose of the inhaler do you use?", "Do you take anything for blood pressure?"],
        ["I take metformin twice a day.", "Just lisinopril ten milligrams.", "I use albuterol when I need it."],
    ),
    "ALLERGY": (
        ["Are you allergic to any medications?", "Any reactions to penicillin?", "Do you have food allergies?"],
        ["Penicillin gives me a rash.", "I am allergic to sulfa drugs.", "No known allergies."],
    ),
    "ROS": (
        ["Any fever or chills?", "Any chest pain or shortness of breath?", "Any changes in your bowel habits?"],
        ["No fever, no chills.", "No chest pain, a little short of breath on stairs.", "No diarrhea or constipation."],
    ),
}
SECTION_WEIGHTS = {"GENHX": 5, "FAM/SOCHX": 6, "MEDICATIONS": 3, "ALLERGY": 2, "ROS": 3}
SPEAKERS = ["Patient:", "Patient:", "Guest_family_1:"]


def section_rows(rng: random.Random, n: int, start_id: int) -> list[dict[str, str]]:
    rows = []
    labels = list(SECTIONS)
    weights = [SECTION_WEIGHTS[label] for label in labels]
    for index in range(n):
        label = rng.choices(labels, weights)[0]
        questions, answers = SECTIONS[label]
        turns = []
        for _ in range(rng.randint(1, 3)):
            turns.append(f"Doctor: {rng.choice(questions)}")
            turns.append(f"{rng.choice(SPEAKERS)}  {rng.choice(answers)} ")
        rows.append(
            {
                "ID": str(start_id + index),
                "section_header": label,
                "section_text": rng.choice(answers),
                "dialogue": "\n".join(turns),
            }
        )
    return rows


# -- adverse-event seriousness -------------------------------------------------------

SERIOUSNESS = {
    "D/LT": [
        "the patient died two days after the infusion",
        "cardiac arrest requiring resuscitation occurred",
        "anaphylactic shock that was life threatening",
        "fatal respiratory failure was reported",
    ],
    "Serious": [
        "the patient was hospitalised for five days",
        "the event required admission to hospital",
        "prolonged hospitalisation due to severe neutropenia",
        "persistent disability after the reaction",
    ],
    "Non-serious": [
        "mild headache resolved without treatment",
        "transient nausea after the first dose",
        "a small rash at the injection site",
        "slight dizziness that resolved the same day",
    ],
}
SERIOUSNESS_WEIGHTS = {"D/LT": 1, "Serious": 3, "Non-serious": 6}
DRUGS = ["amoxicillin", "warfarin", "cisplatin", "atorvastatin", "ibuprofen", "vancomycin"]


def seriousness_rows(rng: random.Random, n: int, start_id: int) -> list[dict[str, str]]:
    rows = []
    labels = list(SERIOUSNESS)
    weights = [SERIOUSNESS_WEIGHTS[label] for label in labels]
    for index in range(n):
        label = rng.choices(labels, weights)[0]
        narrative = (
            f"A {rng.randint(20, 85)} year old {rng.choice(['man', 'woman'])} received {rng.choice(DRUGS)}; "
            f"{rng.choice(SERIOUSNESS[label])}."
        )
        rows.append({"ID": f"AE-{start_id + index:04d}", "Seriousness": label, "Narrative": narrative})
    return rows


# -- NER (NCBI-disease shape) ----------------------------------------------------------

# Validation and test sentences name diseases that training never shows: new
# combinations of training words and names with unseen words (which the tiny
# model's vocabulary lacks, so they reach it as word pieces). A tagger cannot
# score by remembering the training strings.
DISEASES = [
    ["breast", "cancer"],
    ["cystic", "fibrosis"],
    ["huntington", "disease"],
    ["type", "2", "diabetes"],
    ["colorectal", "carcinoma"],
    ["hemophilia", "a"],
    ["duchenne", "muscular", "dystrophy"],
    ["ataxia", "telangiectasia"],
    ["myotonic", "dystrophy"],
    ["adrenoleukodystrophy"],
]
VALIDATION_DISEASES = [
    ["colorectal", "cancer"],
    ["breast", "carcinoma"],
    ["hemophilia", "b"],
    ["type", "1", "diabetes"],
    ["lung", "cancer"],
    ["marfan", "syndrome"],
]
TEST_DISEASES = [
    ["ovarian", "carcinoma"],
    ["muscular", "dystrophy"],
    ["pancreatic", "cancer"],
    ["myotonic", "cataract"],
    ["polycystic", "kidney", "disease"],
    ["fragile", "x", "syndrome"],
]
NER_TEMPLATES = [
    "Mutations in the gene cause {d} in affected families .",
    "Patients with {d} were enrolled in the study .",
    "The risk of {d} increased with age .",
    "We describe a novel variant associated with {d} and {d} .",
    "No cases of {d} were observed in the control group .",
    "Screening for {d} is recommended in carriers .",
]


def ner_sentences(rng: random.Random, n: int, diseases: list[list[str]]) -> list[tuple[list[str], list[str]]]:
    sentences = []
    for _ in range(n):
        template = rng.choice(NER_TEMPLATES)
        tokens: list[str] = []
        tags: list[str] = []
        for word in template.split():
            if word == "{d}":
                disease = rng.choice(diseases)
                tokens.extend(w.capitalize() if rng.random() < 0.3 else w for w in disease)
                tags.extend(["B-Disease"] + ["I-Disease"] * (len(disease) - 1))
            else:
                tokens.append(word)
                tags.append("O")
        sentences.append((tokens, tags))
    return sentences


# -- writers -------------------------------------------------------------------------------


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


BRAT_TYPES = ("SpecificDisease", "Modifier")  # NCBI's type names; configs/ner_brat.yaml merges them into Disease


def write_brat(folder: Path, sentences: list[tuple[list[str], list[str]]], per_document: int = 5) -> None:
    """The sentences as brat documents (NAME.txt / NAME.ann), ``per_document`` sentences each, as prose:
    no space before a full stop. Entity types alternate between two NCBI type names."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in [*folder.glob("*.txt"), *folder.glob("*.ann")]:
        old.unlink()
    entity = 0
    for number, first in enumerate(range(0, len(sentences), per_document), start=1):
        text, lines = "", []
        for tokens, tags in sentences[first:first + per_document]:
            text += " " if text else ""
            starts = []
            for token in tokens:
                if text and not text.endswith(" ") and token != ".":
                    text += " "
                starts.append(len(text))
                text += token
            for index, tag in enumerate(tags):
                if tag.startswith("B-"):
                    last = index
                    while last + 1 < len(tags) and tags[last + 1].startswith("I-"):
                        last += 1
                    start, end = starts[index], starts[last] + len(tokens[last])
                    entity += 1
                    lines.append(f"T{len(lines) + 1}\t{BRAT_TYPES[entity % 2]} {start} {end}\t{text[start:end]}")
        name = f"{folder.name}-{number:02d}"  # names differ across splits: a name is a group (one document)
        (folder / f"{name}.txt").write_text(text + "\n", encoding="utf-8")
        (folder / f"{name}.ann").write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def write_conll(path: Path, sentences: list[tuple[list[str], list[str]]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    blocks = ["\n".join(f"{t}\t{g}" for t, g in zip(tokens, tags)) for tokens, tags in sentences]
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")


# -- multi-label symptom coding (VAERS-symptoms shape: ID, Symptoms joined by ';', Narrative) ------------

FINDINGS = {
    "Pyrexia": ["fever of 102", "temp 39.1 C", "febrile overnight", "high temperature"],
    "Injection site pain": ["sore arm at the injection site", "pain where the shot was given", "tender deltoid"],
    "Rash": ["red rash on the trunk", "maculopapular eruption", "spotty rash on both legs"],
    "Vomiting": ["vomited twice", "emesis after feeds", "threw up in the car"],
    "Headache": ["complained of headache", "frontal head pain", "throbbing headache"],
    "Crying": ["inconsolable crying", "cried for three hours", "persistent crying"],
}
FILLERS = ["Vax given at clinic", "Seen by PCP next day", "Recovered without treatment", "Mother called the nurse line",
           "No prior reactions", "Lot number recorded"]


def symptom_rows(rng: random.Random, n: int, start: int) -> list[dict[str, str]]:
    """Narratives mentioning 0-3 findings; a note's labels are exactly the findings it mentions."""
    rows = []
    names = list(FINDINGS)
    for i in range(n):
        found = rng.sample(names, rng.choice([0, 1, 1, 2, 2, 3]))
        parts = [rng.choice(FINDINGS[name]) for name in found] + rng.sample(FILLERS, 2)
        rng.shuffle(parts)
        parts.insert(0, f"{rng.randint(2, 80)} y/o {rng.choice(['M', 'F'])}, dose {rng.randint(1, 4)}")
        rows.append({"ID": str(70000 + start + i), "Symptoms": ";".join(sorted(found)), "Narrative": "; ".join(parts) + "."})
    return rows


def main() -> None:
    rng = random.Random(SEED)
    data = ROOT / "data"
    for split, n in (("train", 160), ("validation", 40), ("test", 40)):
        write_csv(data / "diagnosis" / f"{split}.csv", diagnosis_rows(rng, n))
    write_csv(data / "section_header" / "train.csv", section_rows(rng, 150, 0))
    write_csv(data / "section_header" / "validation.csv", section_rows(rng, 40, 150))
    write_csv(data / "section_header" / "test.csv", section_rows(rng, 40, 190))
    for split, n, start in (("train", 150, 0), ("validation", 40, 150), ("test", 40, 190)):
        write_csv(data / "seriousness" / f"{split}.csv", seriousness_rows(rng, n, start))
    for split, n, diseases in (("train", 200, DISEASES), ("validation", 50, VALIDATION_DISEASES), ("test", 50, TEST_DISEASES)):
        sentences = ner_sentences(rng, n, diseases)
        write_conll(data / "ner" / f"{split}.conll", sentences)
        write_brat(data / "ner_brat" / split, sentences)  # the same sentences as documents
    symptoms = random.Random(SEED + 1)  # its own stream: adding this set left the other files as they were
    for split, n, start in (("train", 200, 0), ("validation", 60, 200), ("test", 60, 260)):
        write_csv(data / "symptoms" / f"{split}.csv", symptom_rows(symptoms, n, start))
    print(f"synthetic sample data written to {data}")


if __name__ == "__main__":
    main()
