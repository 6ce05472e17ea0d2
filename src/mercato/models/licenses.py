# SPDX-License-Identifier: AGPL-3.0-only
"""The licence identifiers the Hugging Face Hub documents, with names and links.

A model card's `license` is one of these ids (as the Hub writes them: `llama3.1`,
`creativeml-openrail-m`, `cc-by-nc-4.0`...), an SPDX expression (`MIT OR Apache-2.0`),
or `other` with the card's own `license_name` and `license_link`. The table ships with
Mercato: nothing is fetched at run time, so what a page shows never depends on a site
that may change or be down.

Each entry names the SPDX id with the same meaning when there is one, so a licence
reads the same whichever way a card spells it (`apache-2.0` and `Apache-2.0`).
"""

from __future__ import annotations

from dataclasses import dataclass

_SPDX_PAGE = "https://spdx.org/licenses/{}.html"
_HF = "https://huggingface.co/"


@dataclass(frozen=True)
class HubLicense:
    """One licence the Hub documents.

    Attributes:
        id: The Hub's identifier, as a card writes it (`llama3.1`).
        name: Its full name (`Llama 3.1 Community License Agreement`).
        spdx: The SPDX id with the same meaning, or None (custom and family licences).
        link: Where its text is, or None when the id names a family of licences.
    """

    id: str
    name: str
    spdx: str | None
    link: str | None


def _spdx(hub_id: str, name: str, spdx: str) -> HubLicense:
    return HubLicense(hub_id, name, spdx, _SPDX_PAGE.format(spdx))


def _custom(hub_id: str, name: str, link: str | None) -> HubLicense:
    return HubLicense(hub_id, name, None, link)


# The Hub's licence table, in its order. Links for licences without an SPDX id are the
# ones the Hub's documentation gives.
HUB_LICENSES: tuple[HubLicense, ...] = (
    _spdx("apache-2.0", "Apache license 2.0", "Apache-2.0"),
    _spdx("mit", "MIT", "MIT"),
    _custom("openrail", "OpenRAIL license family", _HF + "blog/open_rail"),
    _custom(
        "bigscience-openrail-m",
        "BigScience OpenRAIL-M",
        "https://bigscience.huggingface.co/blog/bigscience-openrail-m",
    ),
    _custom(
        "creativeml-openrail-m",
        "CreativeML OpenRAIL-M",
        _HF + "spaces/CompVis/stable-diffusion-license",
    ),
    _custom(
        "bigscience-bloom-rail-1.0",
        "BigScience BLOOM RAIL 1.0",
        _HF + "spaces/bigscience/license",
    ),
    _custom(
        "bigcode-openrail-m",
        "BigCode Open RAIL-M v1",
        "https://www.bigcode-project.org/docs/pages/bigcode-openrail",
    ),
    _spdx("afl-3.0", "Academic Free License v3.0", "AFL-3.0"),
    _spdx("artistic-2.0", "Artistic license 2.0", "Artistic-2.0"),
    _spdx("bsl-1.0", "Boost Software License 1.0", "BSL-1.0"),
    _custom("bsd", "BSD license family", None),
    _spdx("bsd-2-clause", 'BSD 2-clause "Simplified" license', "BSD-2-Clause"),
    _spdx("bsd-3-clause", 'BSD 3-clause "New" or "Revised" license', "BSD-3-Clause"),
    _spdx("bsd-3-clause-clear", "BSD 3-clause Clear license", "BSD-3-Clause-Clear"),
    _spdx("c-uda", "Computational Use of Data Agreement", "C-UDA-1.0"),
    _custom("cc", "Creative Commons license family", "https://creativecommons.org/licenses/"),
    _spdx("cc0-1.0", "Creative Commons Zero v1.0 Universal", "CC0-1.0"),
    _spdx("cc-by-2.0", "Creative Commons Attribution 2.0", "CC-BY-2.0"),
    _spdx("cc-by-2.5", "Creative Commons Attribution 2.5", "CC-BY-2.5"),
    _spdx("cc-by-3.0", "Creative Commons Attribution 3.0", "CC-BY-3.0"),
    _spdx("cc-by-4.0", "Creative Commons Attribution 4.0", "CC-BY-4.0"),
    _spdx("cc-by-sa-3.0", "Creative Commons Attribution Share Alike 3.0", "CC-BY-SA-3.0"),
    _spdx("cc-by-sa-4.0", "Creative Commons Attribution Share Alike 4.0", "CC-BY-SA-4.0"),
    _spdx("cc-by-nc-2.0", "Creative Commons Attribution Non Commercial 2.0", "CC-BY-NC-2.0"),
    _spdx("cc-by-nc-3.0", "Creative Commons Attribution Non Commercial 3.0", "CC-BY-NC-3.0"),
    _spdx("cc-by-nc-4.0", "Creative Commons Attribution Non Commercial 4.0", "CC-BY-NC-4.0"),
    _spdx("cc-by-nd-4.0", "Creative Commons Attribution No Derivatives 4.0", "CC-BY-ND-4.0"),
    _spdx(
        "cc-by-nc-nd-3.0",
        "Creative Commons Attribution Non Commercial No Derivatives 3.0",
        "CC-BY-NC-ND-3.0",
    ),
    _spdx(
        "cc-by-nc-nd-4.0",
        "Creative Commons Attribution Non Commercial No Derivatives 4.0",
        "CC-BY-NC-ND-4.0",
    ),
    _spdx(
        "cc-by-nc-sa-2.0",
        "Creative Commons Attribution Non Commercial Share Alike 2.0",
        "CC-BY-NC-SA-2.0",
    ),
    _spdx(
        "cc-by-nc-sa-3.0",
        "Creative Commons Attribution Non Commercial Share Alike 3.0",
        "CC-BY-NC-SA-3.0",
    ),
    _spdx(
        "cc-by-nc-sa-4.0",
        "Creative Commons Attribution Non Commercial Share Alike 4.0",
        "CC-BY-NC-SA-4.0",
    ),
    _spdx(
        "cdla-sharing-1.0",
        "Community Data License Agreement - Sharing, Version 1.0",
        "CDLA-Sharing-1.0",
    ),
    _spdx(
        "cdla-permissive-1.0",
        "Community Data License Agreement - Permissive, Version 1.0",
        "CDLA-Permissive-1.0",
    ),
    _spdx(
        "cdla-permissive-2.0",
        "Community Data License Agreement - Permissive, Version 2.0",
        "CDLA-Permissive-2.0",
    ),
    _spdx("wtfpl", "Do What The F*ck You Want To Public License", "WTFPL"),
    _spdx("ecl-2.0", "Educational Community License v2.0", "ECL-2.0"),
    _spdx("epl-1.0", "Eclipse Public License 1.0", "EPL-1.0"),
    _spdx("epl-2.0", "Eclipse Public License 2.0", "EPL-2.0"),
    _spdx("etalab-2.0", "Etalab Open License 2.0", "etalab-2.0"),
    _spdx("eupl-1.1", "European Union Public License 1.1", "EUPL-1.1"),
    _spdx("eupl-1.2", "European Union Public License 1.2", "EUPL-1.2"),
    _spdx("agpl-3.0", "GNU Affero General Public License v3.0", "AGPL-3.0-only"),
    _custom(
        "gfdl", "GNU Free Documentation License family", "https://www.gnu.org/licenses/fdl.html"
    ),
    _custom("gpl", "GNU General Public License family", "https://www.gnu.org/licenses/gpl.html"),
    _spdx("gpl-2.0", "GNU General Public License v2.0", "GPL-2.0-only"),
    _spdx("gpl-3.0", "GNU General Public License v3.0", "GPL-3.0-only"),
    _custom(
        "lgpl", "GNU Lesser General Public License family", "https://www.gnu.org/licenses/lgpl.html"
    ),
    _spdx("lgpl-2.1", "GNU Lesser General Public License v2.1", "LGPL-2.1-only"),
    _spdx("lgpl-3.0", "GNU Lesser General Public License v3.0", "LGPL-3.0-only"),
    _spdx("isc", "ISC", "ISC"),
    _custom("h-research", "H Research License", _HF + "Hcompany/Holo1-3B/blob/main/LICENSE"),
    _custom(
        "intel-research",
        "Intel Research Use License Agreement",
        _HF + "OpenVINO/Llama-3.1-8B-Instruct-FastDraft-150M-int8-ov/blob/main/LICENSE.md",
    ),
    _spdx("lppl-1.3c", "LaTeX Project Public License v1.3c", "LPPL-1.3c"),
    _spdx("ms-pl", "Microsoft Public License", "MS-PL"),
    _custom(
        "apple-ascl",
        "Apple Sample Code license",
        "https://developer.apple.com/support/downloads/terms/apple-sample-code/"
        "Apple-Sample-Code-License.pdf",
    ),
    _custom(
        "apple-amlr",
        "Apple Model License for Research",
        _HF + "apple/deeplabv3-mobilevit-small/blob/main/LICENSE",
    ),
    _spdx("mpl-2.0", "Mozilla Public License 2.0", "MPL-2.0"),
    _spdx("odc-by", "Open Data Commons License Attribution family", "ODC-By-1.0"),
    _spdx("odbl", "Open Database License family", "ODbL-1.0"),
    _custom(
        "openmdw-1.0",
        "Open Model, Data & Weights License Agreement",
        "https://openmdw.ai/license/1-0/",
    ),
    _custom(
        "openmdw-1.1",
        "Open Model, Data & Weights License Agreement v1.1",
        "https://openmdw.ai/license/1-1/",
    ),
    _custom(
        "openrail++",
        "Open Rail++-M License",
        _HF + "stabilityai/stable-diffusion-xl-base-1.0/blob/main/LICENSE.md",
    ),
    _spdx("osl-3.0", "Open Software License 3.0", "OSL-3.0"),
    _spdx("postgresql", "PostgreSQL License", "PostgreSQL"),
    _spdx("ofl-1.1", "SIL Open Font License 1.1", "OFL-1.1"),
    _spdx("ncsa", "University of Illinois/NCSA Open Source License", "NCSA"),
    _spdx("unlicense", "The Unlicense", "Unlicense"),
    _spdx("zlib", "zLib License", "Zlib"),
    _spdx("pddl", "Open Data Commons Public Domain Dedication and License", "PDDL-1.0"),
    _spdx("lgpl-lr", "Lesser General Public License For Linguistic Resources", "LGPLLR"),
    _custom(
        "deepfloyd-if-license",
        "DeepFloyd IF Research License Agreement",
        _HF + "spaces/DeepFloyd/deepfloyd-if-license",
    ),
    _custom(
        "fair-noncommercial-research-license",
        "FAIR Noncommercial Research License",
        _HF + "facebook/fair-noncommercial-research-license/blob/main/LICENSE",
    ),
    _custom(
        "llama2",
        "Llama 2 Community License Agreement",
        _HF + "meta-llama/Llama-2-7b-chat-hf/blob/main/LICENSE.txt",
    ),
    _custom(
        "llama3",
        "Llama 3 Community License Agreement",
        _HF + "meta-llama/Meta-Llama-3-8B/blob/main/LICENSE",
    ),
    _custom(
        "llama3.1",
        "Llama 3.1 Community License Agreement",
        _HF + "meta-llama/Meta-Llama-3.1-70B-Instruct/blob/main/LICENSE",
    ),
    _custom(
        "llama3.2",
        "Llama 3.2 Community License Agreement",
        _HF + "meta-llama/Llama-3.2-1B/blob/main/LICENSE.txt",
    ),
    _custom(
        "llama3.3",
        "Llama 3.3 Community License Agreement",
        _HF + "meta-llama/Llama-3.3-70B-Instruct/blob/main/LICENSE",
    ),
    _custom(
        "llama4",
        "Llama 4 Community License Agreement",
        _HF + "meta-llama/Llama-4-Scout-17B-16E-Instruct/blob/main/LICENSE",
    ),
    _custom(
        "grok2-community",
        "Grok 2 Community License Agreement",
        _HF + "xai-org/grok-2/blob/main/LICENSE",
    ),
    _custom("gemma", "Gemma Terms of Use", "https://ai.google.dev/gemma/terms"),
    _custom("unknown", "Unknown", None),
    _custom("other", "Other", None),
)

# The two ids that say "see the card": `other` needs the card's license_name.
OTHER = "other"
UNKNOWN = "unknown"

_BY_ID = {entry.id: entry for entry in HUB_LICENSES}
_BY_SPDX = {entry.spdx.lower(): entry for entry in HUB_LICENSES if entry.spdx}


def hub_license(value: str) -> HubLicense | None:
    """Find a licence by its Hub id or by the SPDX id of the same licence.

    Args:
        value: A card's `license` (`apache-2.0`, `Apache-2.0`, `llama3.1`...).

    Returns:
        The Hub's entry; None when neither the Hub nor its SPDX column names `value`.
        Case does not matter, as on SPDX.
    """
    key = value.strip().lower()
    return _BY_ID.get(key) or _BY_SPDX.get(key)


def spdx_link(spdx_id: str) -> str:
    """The SPDX licence list's page of one SPDX id.

    Args:
        spdx_id: An SPDX licence id in its canonical spelling (`Apache-2.0`).

    Returns:
        The page's address.
    """
    return _SPDX_PAGE.format(spdx_id)
