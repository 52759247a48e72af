"""What the synthetic speakers say: the LibriSpeech stand-in's lexicon, phoneme set and sentence templates, the
Speech Commands words, Fluent Speech Commands' intents and SNIPS-style commands with their slots.

Pure data and seeded draws (numpy only): the same generator state gives the same words.
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np


def choice(rng: np.random.Generator, items: Sequence[str]) -> str:
    """One of `items`, drawn with one `rng.integers` call (the draw every planner uses)."""
    return items[int(rng.integers(len(items)))]


# The LibriSpeech stand-in's whole vocabulary with CMUdict pronunciations (ARPAbet with stress, the phone
# set of s3prl's downstream/ctc/vocab/phoneme.txt), grouped by the role templates use them in.
_LEXICON: dict[str, dict[str, str]] = {
    "function": {
        "THE": "DH AH0", "A": "AH0", "AND": "AH0 N D", "WAS": "W AA1 Z", "VERY": "V EH1 R IY0",
        "THEN": "DH EH1 N", "IN": "IH0 N", "AT": "AE1 T",
    },
    "noun": {
        "MAN": "M AE1 N", "WOMAN": "W UH1 M AH0 N", "CHILD": "CH AY1 L D", "DOG": "D AO1 G", "CAT": "K AE1 T",
        "HORSE": "HH AO1 R S", "BIRD": "B ER1 D", "KING": "K IH1 NG", "GIRL": "G ER1 L", "BOY": "B OY1",
        "SHIP": "SH IH1 P", "HOUSE": "HH AW1 S", "GARDEN": "G AA1 R D AH0 N", "RIVER": "R IH1 V ER0",
        "FOREST": "F AO1 R AH0 S T", "ROAD": "R OW1 D", "WINDOW": "W IH1 N D OW0", "DOOR": "D AO1 R",
        "TABLE": "T EY1 B AH0 L", "LETTER": "L EH1 T ER0", "BOOK": "B UH1 K", "FIRE": "F AY1 ER0",
        "STONE": "S T OW1 N", "HILL": "HH IH1 L", "CITY": "S IH1 T IY0", "WATER": "W AO1 T ER0",
        "LIGHT": "L AY1 T", "FATHER": "F AA1 DH ER0", "MOTHER": "M AH1 DH ER0", "SOLDIER": "S OW1 L JH ER0",
        "DOCTOR": "D AA1 K T ER0", "CAPTAIN": "K AE1 P T AH0 N", "VILLAGE": "V IH1 L AH0 JH",
    },
    "adjective": {
        "OLD": "OW1 L D", "YOUNG": "Y AH1 NG", "LITTLE": "L IH1 T AH0 L", "GREAT": "G R EY1 T",
        "DARK": "D AA1 R K", "BRIGHT": "B R AY1 T", "QUIET": "K W AY1 AH0 T", "COLD": "K OW1 L D",
        "WARM": "W AO1 R M", "GREEN": "G R IY1 N", "WHITE": "W AY1 T", "RED": "R EH1 D", "TALL": "T AO1 L",
        "STRANGE": "S T R EY1 N JH", "GENTLE": "JH EH1 N T AH0 L", "HAPPY": "HH AE1 P IY0",
    },
    "transitive": {
        "SAW": "S AO1", "FOUND": "F AW1 N D", "WATCHED": "W AA1 CH T", "FOLLOWED": "F AA1 L OW0 D",
        "OPENED": "OW1 P AH0 N D", "CARRIED": "K AE1 R IY0 D", "LEFT": "L EH1 F T", "REACHED": "R IY1 CH T",
        "CALLED": "K AO1 L D", "HEARD": "HH ER1 D",
    },
    "intransitive": {
        "WALKED": "W AO1 K T", "STOOD": "S T UH1 D", "WAITED": "W EY1 T AH0 D", "SPOKE": "S P OW1 K",
        "RAN": "R AE1 N", "SAT": "S AE1 T", "LAUGHED": "L AE1 F T", "SMILED": "S M AY1 L D",
    },
    "preposition": {
        "ON": "AA1 N", "NEAR": "N IH1 R", "OVER": "OW1 V ER0", "UNDER": "AH1 N D ER0", "BY": "B AY1",
        "FROM": "F R AH1 M", "WITH": "W IH1 DH", "TO": "T UW1",
    },
    "possessive": {"HIS": "HH IH1 Z", "HER": "HH ER1", "THEIR": "DH EH1 R"},
    "adverb": {"SLOWLY": "S L OW1 L IY0", "QUICKLY": "K W IH1 K L IY0", "AGAIN": "AH0 G EH1 N"},
    "time": {"MORNING": "M AO1 R N IH0 NG", "EVENING": "IY1 V N IH0 NG", "NIGHT": "N AY1 T"},
}
_TEMPLATES = (
    "THE {adjective} {noun} {transitive} THE {noun}",
    "THE {noun} {transitive} A {adjective} {noun} {preposition} THE {noun}",
    "{possessive} {noun} {intransitive} {preposition} THE {adjective} {noun}",
    "THEN THE {noun} {intransitive} {adverb}",
    "IN THE {time} THE {adjective} {noun} {intransitive} {preposition} THE {noun}",
    "THE {noun} WAS VERY {adjective}",
    "A {adjective} {noun} AND A {adjective} {noun} {intransitive} {preposition} THE {noun}",
    "{possessive} {adjective} {noun} {transitive} THE {noun} AT {time}",
)
PHONEMES = ["SIL", "SPN"] + [p + s for p in ("AA", "AE", "AH", "AO", "AW", "AY") for s in "012"] + \
    ["B", "CH", "D", "DH"] + [p + s for p in ("EH", "ER", "EY") for s in "012"] + ["F", "G", "HH"] + \
    [p + s for p in ("IH", "IY") for s in "012"] + ["JH", "K", "L", "M", "N", "NG"] + \
    [p + s for p in ("OW", "OY") for s in "012"] + ["P", "R", "S", "SH", "T", "TH"] + \
    [p + s for p in ("UH", "UW") for s in "012"] + ["V", "W", "Y", "Z", "ZH"]


def lexicon() -> dict[str, str]:
    """Every word the LibriSpeech stand-in uses -> its ARPAbet pronunciation."""
    return {word: phones for group in _LEXICON.values() for word, phones in group.items()}


def sentence(rng: np.random.Generator) -> str:
    """One to three template clauses joined by AND, upper case like LibriSpeech transcripts."""
    clauses = []
    for _ in range(1 + int(rng.integers(3))):
        template = _TEMPLATES[rng.integers(len(_TEMPLATES))]
        clauses.append(re.sub(r"\{(\w+)\}", lambda m: choice(rng, list(_LEXICON[m.group(1)])), template))
    return " AND ".join(clauses)


# Speech Commands v0.01: the 10 command words and the 20 auxiliary words that make up `_unknown_`.
COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN_WORDS = ("bed", "bird", "cat", "dog", "eight", "five", "four", "happy", "house", "marvin", "nine", "one",
                 "seven", "sheila", "six", "three", "tree", "two", "wow", "zero")


def fluent_intents() -> list[tuple[tuple[str, str, str], tuple[str, ...]]]:
    """The 31 (action, object, location) intents of Fluent Speech Commands, each with several phrasings."""
    intents: list[tuple[tuple[str, str, str], tuple[str, ...]]] = []
    intents.append((("change language", "none", "none"),
                    ("change language", "switch the language", "change the language please")))
    for lang in ("Chinese", "Korean", "English", "German"):
        intents.append((("change language", lang, "none"),
                        (f"switch to {lang}", f"change the language to {lang}", f"set my device to {lang}",
                         f"use {lang}")))
    for action, on, verb in (("activate", "on", "switch on"), ("deactivate", "off", "switch off")):
        intents.append(((action, "lamp", "none"), (f"turn {on} the lamp", f"{verb} the lamp", f"lamp {on}")))
        intents.append(((action, "lights", "none"), (f"turn {on} the lights", f"{verb} the lights", f"lights {on}")))
        for room in ("kitchen", "bedroom", "washroom"):
            intents.append(((action, "lights", room),
                            (f"turn {on} the lights in the {room}", f"{verb} the {room} lights",
                             f"{room} lights {on}")))
    intents.append((("activate", "music", "none"), ("play the music", "put on some music", "start the music")))
    intents.append((("deactivate", "music", "none"), ("stop the music", "pause the music", "turn the music off")))
    for action, way, comparative in (("increase", "up", "warmer"), ("decrease", "down", "cooler")):
        intents.append(((action, "heat", "none"),
                        (f"turn {way} the heat", f"{action} the heating", f"make it {comparative}")))
        for room in ("kitchen", "bedroom", "washroom"):
            intents.append(((action, "heat", room),
                            (f"turn {way} the heat in the {room}", f"make the {room} {comparative}",
                             f"{action} the temperature in the {room}")))
        loud = "louder" if action == "increase" else "quieter"
        intents.append(((action, "volume", "none"),
                        (f"turn {way} the volume", f"{action} the volume", f"make it {loud}", f"{loud} please")))
    for thing in ("newspaper", "juice", "socks", "shoes"):
        intents.append((("bring", thing, "none"), (f"bring me the {thing}", f"get me the {thing}",
                                                   f"fetch the {thing}", f"i need the {thing}")))
    assert len(intents) == 31, len(intents)
    return intents


# SNIPS-style spoken commands: (intent, template); {slot} fields are filled from SNIPS_SLOTS and tagged.
_SNIPS_TEMPLATES = (
    ("PlayMusic", "PLAY {track} BY {artist}"),
    ("PlayMusic", "PUT ON SOME {genre} MUSIC"),
    ("GetWeather", "WHAT IS THE WEATHER IN {city} {timeRange}"),
    ("GetWeather", "WILL IT RAIN IN {city}"),
    ("BookRestaurant", "BOOK A TABLE FOR {party_size_number} AT {restaurant_name}"),
    ("AddToPlaylist", "ADD {track} TO MY {playlist} PLAYLIST"),
    ("RateBook", "GIVE {object_name} {rating_value} STARS"),
    ("SearchCreativeWork", "FIND THE MOVIE {object_name}"),
)
SNIPS_SLOTS: dict[str, tuple[str, ...]] = {
    "track": ("YELLOW SUBMARINE", "BLUE MOON", "RIVER FLOWS", "GOLDEN HOUR"),
    "artist": ("THE BEATLES", "MILES DAVIS", "NORAH JONES", "DAFT PUNK"),
    "genre": ("JAZZ", "ROCK", "CLASSICAL", "FOLK"),
    "city": ("PARIS", "BOSTON", "TOKYO", "BERLIN"),
    "timeRange": ("TOMORROW", "TONIGHT", "THIS WEEKEND", "NEXT MONDAY"),
    "party_size_number": ("TWO", "THREE", "FOUR", "SIX"),
    "restaurant_name": ("THE RED LION", "BLUE GARDEN", "CASA ROSA", "THE OLD MILL"),
    "playlist": ("WORKOUT", "ROAD TRIP", "DINNER", "FOCUS"),
    "object_name": ("THE HOBBIT", "DUNE", "EMMA", "THE ODYSSEY"),
    "rating_value": ("ONE", "THREE", "FOUR", "FIVE"),
}


def snips_command(rng: np.random.Generator) -> tuple[str, str]:
    """(spoken text, SNIPS iob line body "BOS w1 .. wn EOS<TAB>O t1 .. tn INTENT"), a tag per word (slot or O)."""
    intent, template = _SNIPS_TEMPLATES[int(rng.integers(len(_SNIPS_TEMPLATES)))]
    words, tags = [], []
    for token in template.split():
        if token.startswith("{"):
            slot = token.strip("{}")
            value = choice(rng, SNIPS_SLOTS[slot]).split()
            words += value
            tags += [slot] * len(value)
        else:
            words.append(token)
            tags.append("O")
    return " ".join(words), f"BOS {' '.join(words)} EOS\tO {' '.join(tags)} {intent}"
