"""COCO's 80 object classes as the product speaks them: spoken names, plurals, counts, the
words that name each class (for a caption's words and for find mode), and the group each
belongs to, so that a caption that names a dog where a giraffe was detected is known to
contradict it.

    spoken("dining table")            "table"
    counted("person", 2)              "two people"
    classes_in("a man walks a dog")   ["person", "dog"]
    canonical("mobile phone")         "cell phone"
    same_group("dog", "giraffe")      True  (two animals)

The word lists are this project's own, written from everyday English; they are not the CHAIR
metric's list (export/truth.py reads that one from the dataset folder to score descriptions).
"""

from __future__ import annotations

import re

# class, in COCO's order (the detector's outputs): (group, spoken name, its plural, other words
# that name it)
CLASSES: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "person": (
        "person",
        "person",
        "people",
        (
            "man",
            "men",
            "woman",
            "women",
            "boy",
            "boys",
            "girl",
            "girls",
            "child",
            "children",
            "kid",
            "kids",
            "baby",
            "babies",
            "lady",
            "ladies",
            "guy",
            "guys",
            "player",
            "players",
            "skier",
            "skiers",
            "surfer",
            "surfers",
            "skateboarder",
            "skateboarders",
            "snowboarder",
            "rider",
            "riders",
            "people",
            "persons",
            "adult",
            "adults",
            "toddler",
            "teenager",
            "crowd",
            "chef",
            "worker",
            "workers",
            "biker",
            "bikers",
            "cyclist",
            "officer",
            "policeman",
            "soldier",
            "soldiers",
            "student",
            "students",
            "pedestrian",
            "pedestrians",
            "couple",
            "family",
            "team",
            "batter",
            "catcher",
            "pitcher",
            "tourist",
            "tourists",
        ),
    ),
    "bicycle": ("vehicle", "bicycle", "bicycles", ("bike", "bikes", "cycle")),
    "car": (
        "vehicle",
        "car",
        "cars",
        ("taxi", "taxis", "cab", "van", "vans", "suv", "jeep", "sedan", "automobile"),
    ),
    "motorcycle": (
        "vehicle",
        "motorcycle",
        "motorcycles",
        ("motorbike", "motorbikes", "scooter", "scooters", "moped", "mopeds"),
    ),
    "airplane": (
        "vehicle",
        "airplane",
        "airplanes",
        ("plane", "planes", "jet", "jets", "aircraft", "airliner"),
    ),
    "bus": ("vehicle", "bus", "buses", ("busses", "minibus")),
    "train": ("vehicle", "train", "trains", ("locomotive", "tram", "trams", "subway")),
    "truck": ("vehicle", "truck", "trucks", ("lorry", "pickup")),
    "boat": (
        "vehicle",
        "boat",
        "boats",
        ("ship", "ships", "canoe", "kayak", "sailboat", "yacht", "ferry"),
    ),
    "traffic light": ("outdoor", "traffic light", "traffic lights", ("stoplight",)),
    "fire hydrant": ("outdoor", "fire hydrant", "fire hydrants", ("hydrant",)),
    "stop sign": ("outdoor", "stop sign", "stop signs", ()),
    "parking meter": ("outdoor", "parking meter", "parking meters", ("meter",)),
    "bench": ("outdoor", "bench", "benches", ()),
    "bird": (
        "animal",
        "bird",
        "birds",
        (
            "pigeon",
            "pigeons",
            "seagull",
            "duck",
            "ducks",
            "goose",
            "geese",
            "parrot",
            "swan",
            "gull",
        ),
    ),
    "cat": ("animal", "cat", "cats", ("kitten", "kittens", "kitty")),
    "dog": ("animal", "dog", "dogs", ("puppy", "puppies", "pup")),
    "horse": ("animal", "horse", "horses", ("pony", "ponies", "foal")),
    "sheep": ("animal", "sheep", "sheep", ("lamb", "lambs", "ram")),
    "cow": ("animal", "cow", "cows", ("cattle", "bull", "calf", "oxen")),
    "elephant": ("animal", "elephant", "elephants", ()),
    "bear": ("animal", "bear", "bears", ()),
    "zebra": ("animal", "zebra", "zebras", ()),
    "giraffe": ("animal", "giraffe", "giraffes", ()),
    "backpack": ("accessory", "backpack", "backpacks", ("rucksack",)),
    "umbrella": ("accessory", "umbrella", "umbrellas", ("parasol",)),
    "handbag": ("accessory", "handbag", "handbags", ("purse", "purses")),
    "tie": ("accessory", "tie", "ties", ("necktie",)),
    "suitcase": ("accessory", "suitcase", "suitcases", ("luggage", "suitcases")),
    "frisbee": ("sports", "frisbee", "frisbees", ()),
    "skis": ("sports", "skis", "skis", ("ski",)),
    "snowboard": ("sports", "snowboard", "snowboards", ()),
    "sports ball": (
        "sports",
        "ball",
        "balls",
        ("football", "soccer ball", "baseball", "basketball", "tennis ball"),
    ),
    "kite": ("sports", "kite", "kites", ()),
    "baseball bat": ("sports", "baseball bat", "baseball bats", ("bat",)),
    "baseball glove": ("sports", "baseball glove", "baseball gloves", ("glove", "mitt")),
    "skateboard": ("sports", "skateboard", "skateboards", ()),
    "surfboard": ("sports", "surfboard", "surfboards", ()),
    "tennis racket": ("sports", "tennis racket", "tennis rackets", ("racket", "racquet")),
    "bottle": ("kitchen", "bottle", "bottles", ()),
    "wine glass": ("kitchen", "wine glass", "wine glasses", ()),
    "cup": ("kitchen", "cup", "cups", ("mug", "mugs", "teacup", "coffee", "espresso")),
    "fork": ("kitchen", "fork", "forks", ()),
    "knife": ("kitchen", "knife", "knives", ()),
    "spoon": ("kitchen", "spoon", "spoons", ()),
    "bowl": ("kitchen", "bowl", "bowls", ()),
    "banana": ("food", "banana", "bananas", ()),
    "apple": ("food", "apple", "apples", ()),
    "sandwich": ("food", "sandwich", "sandwiches", ("burger", "hamburger")),
    "orange": ("food", "orange", "oranges", ()),
    "broccoli": ("food", "broccoli", "broccoli", ()),
    "carrot": ("food", "carrot", "carrots", ()),
    "hot dog": ("food", "hot dog", "hot dogs", ()),
    "pizza": ("food", "pizza", "pizzas", ()),
    "donut": ("food", "donut", "donuts", ("doughnut", "doughnuts")),
    "cake": ("food", "cake", "cakes", ("cupcake", "cupcakes")),
    "chair": ("furniture", "chair", "chairs", ("stool", "stools", "seat")),
    "couch": ("furniture", "sofa", "sofas", ("couch", "couches", "settee")),
    "potted plant": ("furniture", "potted plant", "potted plants", ("houseplant", "plant")),
    "bed": ("furniture", "bed", "beds", ()),
    "dining table": ("furniture", "table", "tables", ("desk", "dining table")),
    "toilet": ("furniture", "toilet", "toilets", ()),
    "tv": ("electronic", "TV", "TVs", ("television", "televisions", "tv")),
    "laptop": ("electronic", "laptop", "laptops", ("computer", "notebook")),
    "mouse": ("electronic", "mouse", "mice", ()),
    "remote": ("electronic", "remote", "remotes", ("remote control", "controller")),
    "keyboard": ("electronic", "keyboard", "keyboards", ()),
    "cell phone": (
        "electronic",
        "phone",
        "phones",
        ("cellphone", "mobile phone", "smartphone", "mobile", "telephone"),
    ),
    "microwave": ("appliance", "microwave", "microwaves", ()),
    "oven": ("appliance", "oven", "ovens", ("stove",)),
    "toaster": ("appliance", "toaster", "toasters", ()),
    "sink": ("appliance", "sink", "sinks", ()),
    "refrigerator": ("appliance", "fridge", "fridges", ("refrigerator", "freezer")),
    "book": ("indoor", "book", "books", ()),
    "clock": ("indoor", "clock", "clocks", ()),
    "vase": ("indoor", "vase", "vases", ()),
    "scissors": ("indoor", "scissors", "scissors", ()),
    "teddy bear": ("indoor", "teddy bear", "teddy bears", ("teddy",)),
    "hair drier": ("indoor", "hair dryer", "hair dryers", ("hairdryer", "hair drier")),
    "toothbrush": ("indoor", "toothbrush", "toothbrushes", ()),
}
NUMBERS = ("no", "a", "two", "three", "four", "five", "six")  # more than six: "many"

# word (or two words) -> class: each class's name, spoken forms and other words
WORDS: dict[str, str] = {}
for _cls, (_group, _one, _many, _others) in CLASSES.items():
    for _w in (_cls, _one.lower(), _many.lower(), *_others):
        WORDS.setdefault(_w, _cls)
# two-word names first: a "hot dog" is no dog, a "teddy bear" no bear
_PAIRS = {w for w in WORDS if " " in w}
_NOT_AFTER = {"bear": {"teddy"}, "dog": {"hot"}, "glass": {"wine"}}


def spoken(cls: str) -> str:
    return CLASSES[cls][1]


def counted(cls: str, n: int) -> str:
    """'a cup', 'two people', 'many cars'."""
    _, one, many, _ = CLASSES[cls]
    if n <= 1:
        return with_article(one)
    return f"{NUMBERS[n] if n < len(NUMBERS) else 'many'} {many}"


def with_article(name: str) -> str:
    """'a cup', 'an orange', 'skis' and 'scissors' (plurals take none), 'broccoli' (a mass
    noun takes none either)."""
    if name in MASS or (name.endswith("s") and not name.endswith(("ss", "us", "is"))):
        return name
    return ("an " if name[:1].lower() in "aeiou" else "a ") + name


# what a listener hears without an article: "I see coffee", not "I see a coffee"
MASS = {
    "broccoli",
    "coffee",
    "espresso",
    "wine",
    "hay",
    "wool",
    "dough",
    "guacamole",
    "ice cream",
    "mashed potatoes",
    "meatloaf",
    "carbonara",
    "consomme",
    "eggnog",
    "chocolate syrup",
    "trifle",
    "corn",
    "paper",
    "fabric",
    "powder",
    "lotion",
    "sunscreen",
    "hair spray",
    "water",
    "coral",
    "rapeseed",
}


def classes_in(sentence: str) -> list[str]:
    """The COCO classes a sentence names, in the order it names them, each once."""
    words = re.findall(r"[a-z]+", sentence.lower())
    found: list[str] = []
    cls: str | None
    i = 0
    while i < len(words):
        pair = " ".join(words[i : i + 2])
        if pair in _PAIRS:
            cls, i = WORDS[pair], i + 2
        else:
            w = words[i]
            cls = WORDS.get(w)
            if cls is not None and i > 0 and words[i - 1] in _NOT_AFTER.get(w, ()):
                cls = None
            i += 1
        if cls is not None and cls not in found:
            found.append(cls)
    return found


def canonical(name: str) -> str | None:
    """The class a name or word means ('mobile phone', 'cups', 'sofa' -> 'cell phone', 'cup',
    'couch'), or None."""
    name = " ".join(name.lower().split())
    if name in WORDS:
        return WORDS[name]
    for cut in ("es", "s"):
        if name.endswith(cut) and name[: -len(cut)] in WORDS:
            return WORDS[name[: -len(cut)]]
    return None


def group(cls: str) -> str:
    return CLASSES[cls][0]


def same_group(a: str, b: str) -> bool:
    """Two classes of one group (two animals, two vehicles, two foods), the kind of pair a
    caption and a detector must not both state."""
    return a != b and group(a) == group(b)
