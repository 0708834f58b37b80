"""The demo task: extract an order from a free-text message into one line of JSON.

A programmatic generator makes as many examples as needed with known answers, so exact match is a fair
checker. The base model knows what JSON is but not this schema, key order or the quantity-as-integer rule;
a short LoRA fine-tune teaches them.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

INSTRUCTION = (
    "Extract the order from the message as compact JSON with the keys customer, item, quantity "
    "(an integer) and city, in that order."
)

FIRST = [
    "Alice",
    "Bruno",
    "Chen",
    "Dara",
    "Emeka",
    "Farah",
    "Goran",
    "Hana",
    "Ivan",
    "Jonas",
    "Keiko",
    "Lena",
    "Mateo",
    "Nadia",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sven",
    "Tariq",
    "Uma",
    "Viktor",
    "Wen",
    "Yara",
    "Zoe",
]
LAST = [
    "Silva",
    "Novak",
    "Okafor",
    "Lindqvist",
    "Haddad",
    "Tanaka",
    "Moreau",
    "Kowalski",
    "Garcia",
    "Brennan",
    "Petrov",
    "Nguyen",
    "Fischer",
    "Rossi",
    "Mensah",
    "Kaur",
    "Dubois",
    "Jensen",
    "Costa",
    "Yilmaz",
]
ITEMS = [
    "blue notebook",
    "steel water bottle",
    "desk lamp",
    "wireless mouse",
    "yoga mat",
    "coffee grinder",
    "rain jacket",
    "chess set",
    "travel mug",
    "USB cable",
    "hiking boots",
    "paper shredder",
    "tea kettle",
    "bike helmet",
    "phone stand",
    "wool scarf",
    "garden hose",
    "photo frame",
    "backpack",
    "label printer",
]
CITIES = [
    "Lisbon",
    "Oslo",
    "Nairobi",
    "Kyoto",
    "Lima",
    "Toronto",
    "Krakow",
    "Accra",
    "Hanoi",
    "Porto",
    "Austin",
    "Seville",
    "Tallinn",
    "Perth",
    "Bogota",
    "Dublin",
    "Izmir",
    "Lyon",
    "Pune",
    "Graz",
]
NUMBER_WORDS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]
TEMPLATES = [
    "Hi, this is {customer}. Please send {qty} {item}(s) to my address in {city}.",
    "Order from {customer}: {qty} x {item}, deliver to {city}.",
    "{customer} wants {qty} {item}(s) shipped to {city} asap.",
    "Ship to {city} - {qty} units of {item}. Customer: {customer}.",
    "Could you deliver {qty} {item}(s) to {city}? Thanks, {customer}",
    "New order! Customer {customer} in {city} ordered {qty} {item}(s).",
    "Deliver {qty} {item}(s) for {customer} ({city}).",
    "{city} delivery: {customer} needs {qty} of the {item}.",
]


def make_example(rng: random.Random) -> dict[str, str]:
    """One alpaca-format row: instruction, the message as input, the JSON as output."""
    customer = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    item, city = rng.choice(ITEMS), rng.choice(CITIES)
    quantity = rng.randint(1, 12)
    qty_text = NUMBER_WORDS[quantity - 1] if rng.random() < 0.3 else str(quantity)
    message = rng.choice(TEMPLATES).format(customer=customer, qty=qty_text, item=item, city=city)
    answer = json.dumps({"customer": customer, "item": item, "quantity": quantity, "city": city})
    return {"instruction": INSTRUCTION, "input": message, "output": answer}


def write_splits(folder: Path, n_train: int, n_val: int, n_test: int, seed: int = 0) -> dict[str, Path]:
    """Write train/val/test JSONL files with no input shared between splits."""
    rng = random.Random(seed)
    seen: set[str] = set()
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, count in (("train", n_train), ("val", n_val), ("test", n_test)):
        rows = []
        while len(rows) < count:
            row = make_example(rng)
            if row["input"] not in seen:
                seen.add(row["input"])
                rows.append(row)
        paths[name] = folder / f"{name}.jsonl"
        paths[name].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return paths


def same_order(answer: str, target: str) -> bool:
    """The checker: the answer parses as JSON and equals the target object (any whitespace or key order)."""
    try:
        return json.loads(answer) == json.loads(target)
    except (json.JSONDecodeError, TypeError):
        return False


def accuracy(predictions: list[dict[str, object]]) -> float:
    """Share of `{"answer", "target"}` predictions the checker accepts."""
    if not predictions:
        return float("nan")
    return sum(same_order(str(p["answer"]), str(p["target"])) for p in predictions) / len(predictions)
