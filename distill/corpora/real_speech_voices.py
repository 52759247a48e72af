"""The Asterisk voices `gendistiller fetch asterisk-speech` lays out: which Debian package and folder holds each, its
language, credit and licence; which voice is held out of distillation and which voices the content task trains and
tests on; the content classes; the prompts that are not speech. And `Clip`, one recording kept after conversion.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from distill.io.audio import SAMPLE_RATE


@dataclass(frozen=True)
class Voice:
    """One speaker's recordings in one Debian package."""

    name: str  # language_COUNTRY_gender_Name, Asterisk's own naming (ours for the two packages without one)
    package: str  # Debian package
    folder: str  # the voice's folder under usr/share/asterisk/sounds/ in the package
    language: str  # ISO 639-1
    speaker: str  # credit, as the package's copyright file gives it
    licence: str  # of the recordings, from usr/share/doc/<package>/copyright


VOICES: tuple[Voice, ...] = (
    Voice("es_MX_f_Allison", "asterisk-core-sounds-es-wav", "es_MX_f_Allison", "es",
          "Allison Smith (theivrvoice.com), for Digium", "CC-BY-SA-3.0"),
    Voice("fr_CA_f_June", "asterisk-core-sounds-fr-wav", "fr_CA_f_June", "fr",
          "June Wallack (junewallack.com), for Digium", "CC-BY-SA-3.0"),
    Voice("it_IT_m_Carlo", "asterisk-core-sounds-it-wav", "it_IT_m_Carlo", "it",
          "Carlo Flora (carloflora.com)", "CC-BY-3.0"),
    Voice("ru_RU_f_IvrvoiceRU", "asterisk-core-sounds-ru-wav", "ru_RU_f_IvrvoiceRU", "ru",
          "Maxim Topal (ivrvoice.ru)", "CC-BY-3.0"),
    # Colombian Spanish ("acento neutral de Colombia"); the package names its folder just `es`.
    Voice("es_CO_f_July", "asterisk-prompt-es-co", "es", "es",
          "July E. Jimenez, for Avatar Ltda. (avatar.com.co)", "GPL-2.0-only"),
    # French from aclap.com / Indigen Solutions (France); the package names its folder just `fr`.
    Voice("fr_FR_f_Armelle", "asterisk-prompt-fr-armelle", "fr", "fr",
          "Armelle Desjardins; (c) 2006 Michel Gutierrez", "BSD-style (keep the notice; no endorsement)"),
    Voice("it_IT_f_Menardi", "asterisk-prompt-it-menardi-wav", "it_IT_f_Menardi", "it",
          "Marco Menardi and Paola Dal Zot (voip.ammdomus.it)", "CC-BY-SA-3.0-IT"),
)
SOUNDS_DIR = Path("usr/share/asterisk/sounds")  # inside each unpacked package

# Fidelity evaluation voice, kept out of distillation: Italian, so the student has heard its language (Carlo) and the
# measure is about an unseen speaker, not an unseen language. It is also a content-test voice, so a student distilled
# on distill/train has heard none of its audio (it has heard the other two content-test voices, without labels).
HELDOUT_VOICE = "it_IT_f_Menardi"
# Content task: digits are language-specific words, so each test voice has a training voice of its language (ru has
# one voice only and stays in training).
CONTENT_TRAIN_VOICES = ("es_MX_f_Allison", "fr_CA_f_June", "it_IT_m_Carlo", "ru_RU_f_IvrvoiceRU")
CONTENT_TEST_VOICES = ("es_CO_f_July", "fr_FR_f_Armelle", "it_IT_f_Menardi")
# The content classes: the numbers every voice records as a single word (digits/N), and the letters (letters/x;
# es_CO_f_July records none).
NUMBERS = tuple(str(n) for n in range(21)) + tuple(str(n) for n in range(30, 100, 10))
LETTERS = tuple("abcdefghijklmnopqrstuvwxyz")

# Not speech, by name (a prompt's path under its voice folder, without suffix); found in the packages.
NON_SPEECH: dict[str, str] = {
    "beep": "beep tone", "beeperr": "error tone", "ascending-2tone": "two-tone signal",
    "descending-2tone": "two-tone signal", "confbridge-join": "conference join sound",
    "confbridge-leave": "conference leave sound", "tt-monkeys": "monkey noises",
}
NON_SPEECH_FOLDERS: dict[str, str] = {"silence": "silence"}  # silence/1 ... silence/10: N seconds of silence


@dataclass(frozen=True)
class Clip:
    """One kept recording after conversion."""

    voice: str
    prompt: str  # path under the voice folder, without suffix: "digits/7", "vm-intro", "phonetic/ICAO/alfa"
    path: Path  # the converted 16 kHz file (in distill/)
    samples: int

    @property
    def seconds(self) -> float:
        return self.samples / SAMPLE_RATE

    @property
    def label(self) -> tuple[str, str] | None:
        """("number", "7") / ("letter", "b") for the content classes, else None."""
        folder, _, symbol = self.prompt.partition("/")
        if folder == "digits" and symbol in NUMBERS:
            return "number", symbol
        if folder == "letters" and symbol in LETTERS:
            return "letter", symbol
        return None
